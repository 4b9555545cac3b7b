//! The agent's key file: its ed25519 identity seed and its X25519 Noise
//! static secret, as text, written atomically (temp file, fsync, rename,
//! fsync the directory) with owner-only permissions.

use std::fs;
use std::io::Write;
use std::path::Path;

use agentwire_protocol::identity::{Keypair, LocalIdentity, NoiseStaticKeypair};
use rand_core::OsRng;

const HEADER: &str = "agentwire-identity-v1";

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not an AgentWire key file.
    #[error("key file {0} is not an AgentWire identity (create one with `agentwire identity create`)")]
    Malformed(String),
    /// Refusing to overwrite an existing identity.
    #[error("{0} exists already; an agent's identity is its DHT and payment identity, so it is never overwritten")]
    Exists(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io { path: path.display().to_string(), source }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Creates a new identity in `path` (never overwriting one).
pub fn create(path: &Path) -> Result<LocalIdentity, KeyFileError> {
    if path.exists() {
        return Err(KeyFileError::Exists(path.display().to_string()));
    }
    let identity = LocalIdentity::generate(&mut OsRng);
    let text =
        format!("{HEADER}\n{}\n{}\n", hex::encode(identity.identity.seed()), hex::encode(identity.noise.secret()));
    write_secret(path, &text)?;
    Ok(identity)
}

/// Writes a secret (a key file) readable by its owner only (0600 from the
/// first byte), atomically: a temporary file, fsync, rename over `path`,
/// fsync of the directory. Replaces what `path` held.
pub fn write_secret(path: &Path, text: &str) -> Result<(), KeyFileError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = path.with_extension("tmp");
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let _ = fs::remove_file(&tmp);
        let mut f = options.open(&tmp).map_err(io(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    }
    Ok(())
}

/// Loads the identity in `path`.
pub fn load(path: &Path) -> Result<LocalIdentity, KeyFileError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    let mut lines = text.lines();
    let malformed = || KeyFileError::Malformed(path.display().to_string());
    if lines.next() != Some(HEADER) {
        return Err(malformed());
    }
    let seed = lines.next().and_then(parse_hex32).ok_or_else(malformed)?;
    let noise = lines.next().and_then(parse_hex32).ok_or_else(malformed)?;
    Ok(LocalIdentity::new(Keypair::from_seed(&seed), NoiseStaticKeypair::from_secret(noise)))
}

/// Loads `path`, creating it first if it does not exist.
pub fn load_or_create(path: &Path) -> Result<LocalIdentity, KeyFileError> {
    if path.exists() {
        load(path)
    } else {
        create(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_load_and_refuse_to_overwrite() {
        let dir = std::env::temp_dir().join(format!("agentwire-keyfile-{}", std::process::id()));
        let path = dir.join("id.key");
        let _ = fs::remove_dir_all(&dir);
        let made = create(&path).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(made.agent_id(), back.agent_id());
        assert_eq!(made.noise.public(), back.noise.public());
        assert!(matches!(create(&path), Err(KeyFileError::Exists(_))));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "owner only");
            write_secret(&dir.join("x.near-key"), "ed25519:secret").unwrap();
            let mode = fs::metadata(dir.join("x.near-key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "a NEAR key is owner only too");
        }
        fs::write(&path, "nope").unwrap();
        assert!(matches!(load(&path), Err(KeyFileError::Malformed(_))));
        fs::remove_dir_all(&dir).unwrap();
    }
}
