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
/// EX_CANTCREAT: an output file cannot be written.
pub const CANTCREAT: u8 = 73;
/// EX_CONFIG: the configuration is wrong.
pub const CONFIG: u8 = 78;

/// Picks the exit code for an error by its type, never by its text.
pub fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.is::<ConfigErrors>() {
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
