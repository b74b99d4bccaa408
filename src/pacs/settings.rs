//! The configured DICOMweb servers: `$XDG_CONFIG_HOME/cxrlens/servers.json` (mode 0600: it may hold
//! passwords). No file: no server, and the app opens no connection.

use std::path::{Path, PathBuf};

use super::Server;

pub fn servers_path() -> Option<PathBuf> {
    crate::ml::device::settings_path().map(|p| p.with_file_name("servers.json"))
}

/// The saved servers; none when the file does not exist, an error when it cannot be read.
pub fn load(path: &Path) -> Result<Vec<Server>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a cxrlens server list ({e})", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Saves the list atomically, readable and writable by the user only.
pub fn save(path: &Path, servers: &[Server]) -> Result<(), String> {
    for s in servers {
        s.check()?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(servers).map_err(|e| e.to_string())?;
    crate::io::write::write_with_mode(path, Some(0o600), |f| {
        std::io::Write::write_all(f, json.as_bytes())
    })
    .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_round_trip_in_a_file_only_the_user_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cxrlens/servers.json");
        assert!(load(&path).unwrap().is_empty(), "no file: no server");
        let servers = vec![Server {
            name: "site PACS".into(),
            base_url: "https://pacs.example.org/dicom-web".into(),
            username: "reader".into(),
            password: "s3cret".into(),
        }];
        save(&path, &servers).unwrap();
        assert_eq!(load(&path).unwrap(), servers);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let bad = vec![Server {
            base_url: "pacs.example.org".into(),
            ..Default::default()
        }];
        assert!(save(&path, &bad).unwrap_err().contains("http://"));
        assert_eq!(
            load(&path).unwrap(),
            servers,
            "a refused list leaves the old one"
        );
        std::fs::write(&path, "{ not json").unwrap();
        assert!(
            load(&path)
                .unwrap_err()
                .contains("not a cxrlens server list")
        );
    }
}
