//! Exit codes. Below 64 a command reports a result (e.g. `inspect --ca` exits 1 when the
//! certificate does not verify); 64 and above (sysexits.h) mean it could not do its job, so a
//! script can always tell "not trusted" from "could not check".

use crate::config::ConfigErrors;
use crate::files::InputError;

/// A verification ran and the answer is no.
pub const REJECTED: u8 = 1;
/// EX_USAGE: bad command line.
pub const USAGE: u8 = 64;
/// EX_DATAERR: an input file is malformed.
pub const DATAERR: u8 = 65;
/// EX_NOINPUT: an input file is missing or unreadable.
pub const NOINPUT: u8 = 66;
/// EX_SOFTWARE: a bug.
pub const SOFTWARE: u8 = 70;
/// EX_TEMPFAIL: try again later (another command holds a lock).
pub const TEMPFAIL: u8 = 75;
/// EX_CANTCREAT: an output file cannot be written.
pub const CANTCREAT: u8 = 73;
/// EX_NOPERM: a server refused us for good (401, 403): retrying will not help.
pub const NOPERM: u8 = 77;
/// EX_CONFIG: the configuration is wrong.
pub const CONFIG: u8 = 78;

/// The exit code for a server that answered `status` instead of what was asked: 401/403 are
/// permanent refusals (77), other 4xx say the request was wrong (65), anything else (5xx, 429,
/// an odd 2xx/3xx) may pass (75).
pub fn for_http_status(status: u16) -> u8 {
    match status {
        401 | 403 => NOPERM,
        429 => TEMPFAIL,
        400..=499 => DATAERR,
        _ => TEMPFAIL,
    }
}

/// Picks the exit code for an error by its type, never by its text.
pub fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.code;
        }
        if let Some(errors) = cause.downcast_ref::<ConfigErrors>() {
            // The config file itself is missing: a missing input, like any other.
            if errors.0.iter().any(|e| e.unreadable) {
                return NOINPUT;
            }
            return CONFIG;
        }
        if let Some(e) = cause.downcast_ref::<InputError>() {
            return match e {
                InputError::NotFound(_)
                | InputError::IsDirectory(_)
                | InputError::PermissionDenied(_)
                | InputError::EnvMissing(_) => NOINPUT,
                _ => DATAERR,
            };
        }
        if cause.is::<certgate_pki::Error>() {
            return DATAERR;
        }
        if cause.is::<std::io::Error>() {
            return CANTCREAT;
        }
    }
    SOFTWARE
}

/// An error a person caused and can fix, with the exit code that says which kind.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// What went wrong and what to do.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Builds an [`anyhow::Error`] carrying its exit code.
pub fn fail(code: u8, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        code,
        message: message.into(),
    })
}
