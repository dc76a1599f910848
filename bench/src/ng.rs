//! An ng-protocol client (rtpengine's control protocol: "<cookie> <bencoded dict>" over UDP),
//! generic enough for any ng server: rtpengine and our relay's listener alike.
use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket},
    time::Duration,
};

use anyhow::{Context, Result, bail};

// The relay's own ng codec (relay-ctl/src/ng/bencode.rs): one bencode in the project, and the
// client it drives rtpengine with is the one it drives our listener with.
use relay_ctl::ng::bencode::{DictBuilder, Value, decode, encode};

static NEXT_COOKIE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub struct Client {
    sock: UdpSocket,
    server: SocketAddr,
    seq: u64,
}

impl Client {
    /// Create in the calling thread's namespace.
    pub fn new(server: SocketAddr) -> Result<Client> {
        let sock = UdpSocket::bind("127.0.0.1:0").context("ng client socket")?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(Client {
            sock,
            server,
            seq: 0,
        })
    }

    /// One request, one reply (matched by cookie; late replies to earlier cookies are skipped).
    pub fn call(&mut self, req: &Value) -> Result<Value> {
        // Unique per process, not per client: ng servers cache replies by cookie, so a reused
        // cookie (a new client after a timed-out ping) would get an old reply.
        self.seq = NEXT_COOKIE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cookie = format!("{}_{}", std::process::id(), self.seq);
        let mut msg = format!("{cookie} ").into_bytes();
        msg.extend_from_slice(&encode(req));
        self.sock.send_to(&msg, self.server).context("ng send")?;
        let mut buf = vec![0u8; 65_536];
        for _ in 0..16 {
            let n = self.sock.recv(&mut buf).context("ng reply (timeout)")?;
            let reply = &buf[..n];
            let Some(sp) = reply.iter().position(|&c| c == b' ') else {
                continue;
            };
            if &reply[..sp] != cookie.as_bytes() {
                continue;
            }
            let v = decode(&reply[sp + 1..]).map_err(|e| anyhow::anyhow!("ng reply: {e}"))?;
            if v.get("result").and_then(Value::as_str) == Some("error") {
                bail!(
                    "ng error: {}",
                    v.get("error-reason").and_then(Value::as_str).unwrap_or("?")
                );
            }
            return Ok(v);
        }
        bail!("no ng reply with cookie {cookie}")
    }

    /// True if the server answers `ping` with `pong`.
    pub fn ping(&mut self) -> bool {
        let ping = DictBuilder::new().str("command", "ping").build();
        matches!(self.call(&ping), Ok(v) if v.get("result").and_then(Value::as_str) == Some("pong"))
    }

    /// Offer from `from` then answer from `to`; returns where each side must send:
    /// (relay endpoint for `from`'s media, relay endpoint for `to`'s media).
    pub fn offer_answer(
        &mut self,
        call_id: &str,
        from: SocketAddrV4,
        to: SocketAddrV4,
        direction: Option<(&str, &str)>,
    ) -> Result<(SocketAddrV4, SocketAddrV4)> {
        let mut offer = DictBuilder::new()
            .str("command", "offer")
            .str("call-id", call_id)
            .str("from-tag", "ft")
            .str("sdp", sdp(from));
        if let Some((a, b)) = direction {
            offer = offer.put("direction", Value::List(vec![Value::str(a), Value::str(b)]));
        }
        let r = self.call(&offer.build())?;
        let for_to = sdp_media(
            r.get("sdp")
                .and_then(Value::as_str)
                .with_context(|| format!("offer reply without sdp: {r:?}"))?,
        )?;
        let answer = DictBuilder::new()
            .str("command", "answer")
            .str("call-id", call_id)
            .str("from-tag", "ft")
            .str("to-tag", "tt")
            .str("sdp", sdp(to))
            .build();
        let r = self.call(&answer)?;
        let for_from = sdp_media(
            r.get("sdp")
                .and_then(Value::as_str)
                .context("answer reply without sdp")?,
        )?;
        Ok((for_from, for_to))
    }

    pub fn delete(&mut self, call_id: &str) -> Result<()> {
        let delete = DictBuilder::new()
            .str("command", "delete")
            .str("call-id", call_id)
            .str("from-tag", "ft")
            .build();
        self.call(&delete)?;
        Ok(())
    }
}

/// A one-stream audio SDP for `at` (PCMU).
pub fn sdp(at: SocketAddrV4) -> String {
    let ip = at.ip();
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        at.port()
    )
}

/// The connection address and the first m= port of an SDP.
pub fn sdp_media(sdp: &str) -> Result<SocketAddrV4> {
    let ip: Ipv4Addr = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))
        .context("sdp without c=IN IP4")?
        .trim()
        .parse()
        .context("sdp c= address")?;
    let port: u16 = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))
        .and_then(|r| r.split_whitespace().next())
        .context("sdp without m=audio")?
        .parse()
        .context("sdp m= port")?;
    Ok(SocketAddrV4::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_round_trip() {
        let a: SocketAddrV4 = "198.18.10.2:10000".parse().unwrap();
        assert_eq!(sdp_media(&sdp(a)).unwrap(), a);
        assert!(sdp_media("v=0\r\n").is_err());
    }
}
