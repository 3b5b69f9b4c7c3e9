//! File and secret input for the binary: the only place that reads user files and the environment
//! for credentials, so every error names the path or variable and says what was wrong.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Why a file or secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The path does not exist.
    #[error("`{0}`: no such file")]
    NotFound(PathBuf),
    /// The path is a directory.
    #[error("`{0}`: is a directory, expected a file")]
    IsDirectory(PathBuf),
    /// Permission denied.
    #[error("`{0}`: permission denied")]
    PermissionDenied(PathBuf),
    /// Another I/O error.
    #[error("`{path}`: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A file is larger than any credential file should be.
    #[error("`{path}`: {size} bytes is too large for a credential file (limit {limit})")]
    TooLarge {
        /// The path.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// An environment variable is not set.
    #[error("environment variable `{0}` is not set")]
    EnvMissing(String),
    /// An environment variable is not UTF-8.
    #[error("environment variable `{0}` is not valid UTF-8")]
    EnvNotUnicode(String),
    /// A password file is empty.
    #[error("`{0}`: the password file is empty")]
    EmptyPassword(PathBuf),
}

/// Credential files (certificates, keys, CRLs, PKCS#12) are small; a CRL with 100,000 entries is
/// a few MiB. Anything larger is a mistake (a wrong path to an image or a disk).
pub const MAX_CREDENTIAL_FILE: u64 = 64 * 1024 * 1024;

/// Reads a credential file, refusing directories and absurd sizes.
pub fn read(path: &Path) -> Result<Vec<u8>, InputError> {
    let meta = fs::metadata(path).map_err(|e| classify(path, e))?;
    if meta.is_dir() {
        return Err(InputError::IsDirectory(path.to_owned()));
    }
    if meta.len() > MAX_CREDENTIAL_FILE {
        return Err(InputError::TooLarge {
            path: path.to_owned(),
            size: meta.len(),
            limit: MAX_CREDENTIAL_FILE,
        });
    }
    fs::read(path).map_err(|e| classify(path, e))
}

fn classify(path: &Path, e: io::Error) -> InputError {
    match e.kind() {
        io::ErrorKind::NotFound => InputError::NotFound(path.to_owned()),
        io::ErrorKind::PermissionDenied => InputError::PermissionDenied(path.to_owned()),
        io::ErrorKind::IsADirectory => InputError::IsDirectory(path.to_owned()),
        _ => InputError::Io {
            path: path.to_owned(),
            source: e,
        },
    }
}

/// Reads a password from a file: the first line, without its line ending (as OpenSSL's
/// `-passin file:` does).
pub fn password_from_file(path: &Path) -> Result<String, InputError> {
    let bytes = read(path)?;
    let text = String::from_utf8_lossy(&bytes);
    let line = text.lines().next().unwrap_or("").to_owned();
    if line.is_empty() {
        return Err(InputError::EmptyPassword(path.to_owned()));
    }
    Ok(line)
}

/// Reads a password from an environment variable, as is.
pub fn password_from_env(var: &str) -> Result<String, InputError> {
    match std::env::var(var) {
        Ok(v) => Ok(v),
        Err(std::env::VarError::NotPresent) => Err(InputError::EnvMissing(var.to_owned())),
        Err(std::env::VarError::NotUnicode(_)) => Err(InputError::EnvNotUnicode(var.to_owned())),
    }
}

/// Writes a file that holds a secret: created with mode 0600 before any byte is written.
pub fn write_secret(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with_mode(path, bytes, 0o600)
}

/// Writes a public file (mode 0644), replacing it atomically.
pub fn write_public(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with_mode(path, bytes, 0o644)
}

fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A temporary file in the target's directory (so the rename is atomic), under a random name
    // and created exclusively: an existing file or a planted link there is never opened or
    // followed. Its mode is set at creation, before the first byte.
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
