//! Passphrases and mnemonic input: environment variables for scripts, prompts on a terminal.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result, bail};

use cairn_wallet::WalletFile;
use std::io::Read;

use cairn_wallet::keystore::parse_mnemonic;
use cairn_wallet::{Keychain, Mnemonic, WalletError};

/// Environment variable holding the passphrase (may be empty) for scripts.
pub const ENV_PASSPHRASE: &str = "CAIRN_WALLET_PASSPHRASE";
/// Environment variable holding the mnemonic for `import` in scripts.
pub const ENV_MNEMONIC: &str = "CAIRN_WALLET_MNEMONIC";
/// Largest mnemonic input read from a file or stdin.
pub const MAX_MNEMONIC_BYTES: u64 = 4096;
/// Passphrase attempts at the prompt.
pub const PROMPT_ATTEMPTS: usize = 3;

/// Whether we can prompt: stderr is a terminal and the process has a controlling terminal.
pub fn interactive() -> bool {
    std::io::stderr().is_terminal() && std::fs::File::open("/dev/tty").is_ok()
}

pub fn env_var(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => bail!("{name} is not valid UTF-8"),
    }
}

/// Unlocks an existing wallet: `$CAIRN_WALLET_PASSPHRASE`, else the empty passphrase (the dev
/// wallet's), else a prompt on the terminal, else a hint.
pub fn unlock(wallet: &WalletFile, path: &Path) -> Result<Keychain> {
    if let Some(p) = env_var(ENV_PASSPHRASE)? {
        return Ok(wallet.unlock(&p)?);
    }
    match wallet.unlock("") {
        Ok(k) => return Ok(k),
        Err(WalletError::WrongPassphrase) => {}
        Err(e) => return Err(e.into()),
    }
    if !interactive() {
        bail!(
            "wallet {} needs its passphrase: set {ENV_PASSPHRASE} (no terminal to prompt on)",
            path.display()
        );
    }
    for _ in 0..PROMPT_ATTEMPTS {
        let p = rpassword::prompt_password(format!("Passphrase for {}: ", path.display()))
            .context("cannot read the passphrase")?;
        match wallet.unlock(&p) {
            Ok(k) => return Ok(k),
            Err(WalletError::WrongPassphrase) => eprintln!("wrong passphrase"),
            Err(e) => return Err(e.into()),
        }
    }
    Err(WalletError::WrongPassphrase.into())
}

/// The passphrase for a new wallet file: `$CAIRN_WALLET_PASSPHRASE` or a prompt (twice).
pub fn new_passphrase() -> Result<String> {
    if let Some(p) = env_var(ENV_PASSPHRASE)? {
        return Ok(p);
    }
    if !interactive() {
        bail!(
            "no passphrase for the new wallet: set {ENV_PASSPHRASE} (it may be empty; no terminal to prompt on)"
        );
    }
    let p = rpassword::prompt_password("New wallet passphrase: ")
        .context("cannot read the passphrase")?;
    let again =
        rpassword::prompt_password("Repeat passphrase: ").context("cannot read the passphrase")?;
    if p != again {
        bail!("the passphrases differ");
    }
    if p.is_empty() {
        eprintln!(
            "warning: empty passphrase: anyone who can read the wallet file can spend its coins"
        );
    }
    Ok(p)
}

/// The mnemonic for `import`: --mnemonic-file, `$CAIRN_WALLET_MNEMONIC`, piped stdin, or a
/// hidden prompt. Never a command-line argument (it would land in shell history and `ps`).
pub fn read_mnemonic(file: Option<&Path>) -> Result<Mnemonic> {
    let text = if let Some(f) = file {
        let mut s = String::new();
        std::fs::File::open(f)
            .with_context(|| format!("cannot open {}", f.display()))?
            .take(MAX_MNEMONIC_BYTES)
            .read_to_string(&mut s)
            .with_context(|| format!("cannot read {}", f.display()))?;
        s
    } else if let Some(m) = env_var(ENV_MNEMONIC)? {
        m
    } else if !std::io::stdin().is_terminal() {
        let mut s = String::new();
        std::io::stdin()
            .take(MAX_MNEMONIC_BYTES)
            .read_to_string(&mut s)
            .context("cannot read the mnemonic from stdin")?;
        s
    } else if interactive() {
        rpassword::prompt_password("Mnemonic words (hidden): ")
            .context("cannot read the mnemonic")?
    } else {
        bail!(
            "no mnemonic given: use --mnemonic-file FILE, {ENV_MNEMONIC}, or pipe the words on stdin"
        );
    };
    Ok(parse_mnemonic(&text)?)
}
