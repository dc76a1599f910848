//! The queries of the committed Grafana dashboard, made runnable against Prometheus' API, and
//! the metric selectors inside any PromQL expression.
use serde_json::Value;

/// A dashboard query: where it came from, and the PromQL Prometheus is to run.
#[derive(Debug)]
pub struct Query {
    pub origin: String,
    pub promql: String,
}

/// Grafana's built-in interval variables as Grafana would fill them for a 1 s scrape interval
/// and a short time range, and the dashboard's own `$instance` with "All" selected (its
/// allValue, `.*`). Anything else left with a `$` is an error.
fn substitute(expr: &str) -> Result<String, String> {
    let mut s = expr.to_owned();
    for (var, value) in [
        ("$__rate_interval", "1m"),
        ("${__rate_interval}", "1m"),
        ("$__interval", "15s"),
        ("${__interval}", "15s"),
        ("$__range", "1h"),
        ("${__range}", "1h"),
        ("${instance}", ".*"),
        ("$instance", ".*"),
    ] {
        s = s.replace(var, value);
    }
    if s.contains('$') {
        return Err(format!("unknown variable in {expr:?}"));
    }
    Ok(s)
}

/// Every target of every panel (rows' nested panels included) and every query variable, as
/// PromQL. `label_values(selector, label)` variables become their selector.
pub fn dashboard_queries(dash: &Value) -> Result<Vec<Query>, String> {
    let mut out = vec![];
    let mut panels: Vec<&Value> = dash["panels"].as_array().into_iter().flatten().collect();
    while let Some(p) = panels.pop() {
        panels.extend(p["panels"].as_array().into_iter().flatten());
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap_or("?");
        if p["datasource"]["uid"] != "${datasource}" {
            return Err(format!(
                "panel {title:?} does not use the $datasource variable"
            ));
        }
        let targets = p["targets"].as_array().filter(|t| !t.is_empty());
        let Some(targets) = targets else {
            return Err(format!("panel {title:?} has no query"));
        };
        for t in targets {
            let expr = t["expr"]
                .as_str()
                .ok_or_else(|| format!("panel {title:?} has a target without expr"))?;
            out.push(Query {
                origin: format!("panel {title:?} target {}", t["refId"]),
                promql: substitute(expr)?,
            });
        }
    }
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .ok_or_else(|| format!("variable {} has no query", v["name"]))?;
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .and_then(|r| r.rsplit_once(','))
            .map(|(sel, _label)| sel.trim())
            .ok_or_else(|| format!("variable query {q:?} is not label_values(selector, label)"))?;
        out.push(Query {
            origin: format!("variable {}", v["name"]),
            promql: substitute(inner)?,
        });
    }
    Ok(out)
}

/// The instant-vector and range selectors an expression reads (`up{job="x"}`,
/// `media_relay_port_pairs{state="free"}`), label matchers included, range suffix dropped.
/// Only our families and `up`: no function, keyword or label name here starts with those.
pub fn selectors(expr: &str) -> Vec<String> {
    let b = expr.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' {
            // A string literal: skip to its end.
            i += 1 + expr[i + 1..].find('"').unwrap_or(b.len());
            continue;
        }
        if !word(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && word(b[i]) {
            i += 1;
        }
        let name = &expr[start..i];
        if !(name.starts_with("media_relay_") || name == "up") {
            continue;
        }
        let mut sel = name.to_owned();
        if b.get(i) == Some(&b'{') {
            let close = expr[i..].find('}').map_or(b.len(), |c| i + c + 1);
            sel.push_str(&expr[i..close]);
            i = close;
        }
        out.push(sel);
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn selectors_are_found_with_their_matchers() {
    let e = r#"sum by (instance, addr) (media_relay_port_pairs{state="free"}) / sum by (instance) (rate(media_relay_x_total[5m])) and on (instance) up{job="media-relay"} == 1"#;
    assert_eq!(
        selectors(e),
        [
            "media_relay_port_pairs{state=\"free\"}",
            "media_relay_x_total",
            "up{job=\"media-relay\"}"
        ]
    );
}

#[test]
fn unknown_variables_are_refused() {
    assert_eq!(
        substitute("rate(x{instance=~\"$instance\"}[$__rate_interval])").as_deref(),
        Ok("rate(x{instance=~\".*\"}[1m])")
    );
    assert!(substitute("x{job=\"$job\"}").is_err());
}
