//! The persistent node key (`<datadir>/p2p_key`).

use super::*;

/// Loads the node key from `<dir>/p2p_key` (32 raw bytes of an ed25519 secret key), creating it
/// with mode 0600 if absent, so the peer id survives restarts.
pub fn load_or_create_node_key(dir: &Path) -> Result<identity::Keypair, P2pError> {
    let path = dir.join(NODE_KEY_FILE);
    let err = |reason: String| P2pError::NodeKey {
        path: path.display().to_string(),
        reason,
    };
    if path.exists() {
        let mut bytes = fs::read(&path).map_err(|e| err(e.to_string()))?;
        let secret = identity::ed25519::SecretKey::try_from_bytes(&mut bytes)
            .map_err(|e| err(e.to_string()))?;
        return Ok(identity::ed25519::Keypair::from(secret).into());
    }
    fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    let keypair = identity::ed25519::Keypair::generate();
    let tmp = dir.join(format!("{NODE_KEY_FILE}.tmp"));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(|e| err(e.to_string()))?;
    file.write_all(keypair.secret().as_ref())
        .and_then(|()| file.sync_all())
        .map_err(|e| err(e.to_string()))?;
    fs::rename(&tmp, &path).map_err(|e| err(e.to_string()))?;
    info!(path = %path.display(), "created p2p node key");
    Ok(keypair.into())
}
