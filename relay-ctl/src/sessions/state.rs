//! The state file: what the pinned maps cannot hold (sessions, signalled addresses, port
//! pairs, slots, userspace counters), so a restarted daemon can adopt the running data
//! plane. Written atomically (temporary file, fsync, rename), so a crash mid-write leaves
//! the previous version.
use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::model::Session;
use crate::api::InterfaceView;

/// Bumped when the layout changes incompatibly; an unknown version is refused, not guessed.
pub const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub struct StateFile {
    pub version: u32,
    pub instance: String,
    pub interfaces: Vec<InterfaceView>,
    pub sessions: Vec<Session>,
}

pub fn save(path: &Path, state: &StateFile) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp: PathBuf = {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        dir.join(name)
    };
    let body = serde_json::to_vec(state).context("encoding the state")?;
    {
        let mut f =
            fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&body)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
    }
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    // The rename itself must reach the disk too (on tmpfs this is a no-op).
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// `Ok(None)` when there is no state file (first start).
pub fn load(path: &Path) -> Result<Option<StateFile>> {
    let body = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let state: StateFile = serde_json::from_slice(&body)
        .with_context(|| format!("parsing the state file {}", path.display()))?;
    anyhow::ensure!(
        state.version == VERSION,
        "state file {} has version {}, this daemon reads {VERSION}",
        path.display(),
        state.version
    );
    Ok(Some(state))
}

pub fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_version_check() {
        let dir = std::env::temp_dir().join(format!("mr-state-{}", std::process::id()));
        let path = dir.join("x.json");
        assert!(load(&path).expect("missing is fine").is_none());
        let st = StateFile {
            version: VERSION,
            instance: "t".into(),
            interfaces: vec![],
            sessions: vec![],
        };
        save(&path, &st).expect("save");
        let back = load(&path).expect("load").expect("present");
        assert_eq!(back.instance, "t");
        fs::write(
            &path,
            br#"{"version":99,"instance":"t","interfaces":[],"sessions":[]}"#,
        )
        .expect("write");
        assert!(load(&path).is_err());
        fs::write(&path, b"{not json").expect("write");
        assert!(load(&path).is_err());
        remove(&path).expect("remove");
        remove(&path).expect("remove twice");
        let _ = fs::remove_dir(&dir);
    }
}
