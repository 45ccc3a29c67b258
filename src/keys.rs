//! Ed25519 key files: the SSH host key and the instance's federation signing key.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use rand::RngCore;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::PrivateKey;

/// Loads the key at `path`, creating a new Ed25519 key (mode 0600) if there is none.
/// Returns the key and whether it was created.
pub fn load_or_create(path: &Path, comment: &str) -> anyhow::Result<(PrivateKey, bool)> {
    if path.exists() {
        let mode = std::fs::metadata(path)
            .with_context(|| format!("cannot stat {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "key file {} is readable by others (mode {:o}); run: chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?;
        let key = PrivateKey::from_openssh(text).with_context(|| {
            format!("key file {} is not an OpenSSH private key", path.display())
        })?;
        return Ok((key, false));
    }
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment(comment);
    let text = key
        .to_openssh(LineEnding::LF)
        .context("cannot encode the new key")?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create key file {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write key file {}", path.display()))?;
    Ok((key, true))
}
