//! Command-line arguments. Names here are a stable contract: scripts, service units and the
//! tests depend on them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Examples:
  certgate quickstart
  certgate ca init --dir ca && certgate ca issue --dir ca --client alice --p12
  certgate inspect alice.pem --ca ca/ca.pem --crl ca/crl.pem
  certgate check --config certgate.toml

Exit codes: 0 success; 1 a verification ran and said no; 64 usage; 65 malformed input;
66 missing input; 73 cannot write output; 75 temporary failure, try again; 77 refused for good
(401/403); 78 configuration errors.";

/// Certificate identity for self-hosted services.
///
/// certgate terminates and originates mutual TLS, runs a small CA for people who have none, and
/// inspects and verifies certificates, keys, PKCS#12 files, CRLs and CSRs.
#[derive(Debug, Parser)]
#[command(
    name = "certgate",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a dev PKI and config, then run a gateway on localhost and print curl commands.
    Quickstart(QuickstartArgs),
    /// Run every listener the config declares: ingress, tunnels, egress, the log, admin.
    Serve(ServeArgs),
    /// Validate a config file and every file it references; report every error at once.
    Check(CheckArgs),
    /// The small CA: init, issue, revoke, crl.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Describe certificates, chains, keys, PKCS#12 files, CRLs and CSRs; optionally verify them.
    Inspect(InspectArgs),
    /// Client certificates on outgoing connections: the interception CA, and which identity a
    /// URL gets.
    #[command(subcommand)]
    Egress(EgressCommand),
    /// The transparency log: create one, append, fetch and check checkpoints, proofs.
    #[command(subcommand)]
    Log(LogCommand),
    /// Content trust: sign, untrust and verify artifacts against a transparency log.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Wait until a running `certgate serve` is ready (its admin `/readyz` answers 200): start
    /// certgate first, then the apps that depend on it.
    WaitReady(WaitReadyArgs),
    /// Show what a running `certgate serve` says about itself: listeners, routes, certificates
    /// and CRLs with their expiry, recent refusals, egress rules, the log (the admin page, `/`).
    Status(StatusArgs),
    /// Write shell completions or man pages, made from these very definitions (for packagers).
    #[command(subcommand)]
    Generate(GenerateCommand),
}

/// `certgate generate ...`.
#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Print the completion script for SHELL on stdout.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write one man page per command (`certgate.1`, `certgate-serve.1`, ...) into DIR.
    Man {
        /// The directory to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// `certgate egress ...`.
#[derive(Debug, Subcommand)]
pub enum EgressCommand {
    /// Create the local interception CA for `[egress] intercept_ca` (ca.pem is what apps trust).
    /// Its name constraints permit only the hosts of the config's egress rules (and `--host`),
    /// so its key cannot impersonate any other site.
    Ca {
        /// The directory to create.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The config whose `[[egress.rule]]` hosts the CA may sign for.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Another host the CA may sign for (`name`, `*.domain` or an IP address); repeatable.
        #[arg(long = "host", value_name = "HOST")]
        hosts: Vec<String>,
        /// Replace the CA in DIR (rotation): its key is deleted, its certificate kept as
        /// previous-ca.pem.
        #[arg(long)]
        force: bool,
        /// The CA's common name.
        #[arg(long, default_value = "certgate egress interception CA")]
        name: String,
        /// Validity in days (at most 365).
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Which egress rule and client identity a URL gets, and why.
    Explain(ExplainArgs),
}

/// `certgate egress explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The destination: `https://host[:port]/path` (or `http://...`, originated over https).
    pub url: String,
    /// The config file.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// Also connect: run the TLS handshake and report the server's CA hints and the final choice.
    #[arg(long)]
    pub connect: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `certgate quickstart`.
#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Where to put the dev PKI and config. Reused on later runs.
    #[arg(long, default_value = "certgate-quickstart", value_name = "DIR")]
    pub dir: PathBuf,
    /// Where the gateway listens (written into a new config; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR")]
    pub listen: String,
    /// Create and check everything, but do not start the gateway.
    #[arg(long)]
    pub no_serve: bool,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `certgate serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The config file.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// Write this file (the bound listeners, one per line) once every identity is loaded and
    /// every listener is bound; it is removed on exit. For start-up ordering without HTTP.
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
}

/// `certgate wait-ready`.
#[derive(Debug, Args)]
pub struct WaitReadyArgs {
    /// The config file of the `certgate serve` to wait for (its `[admin] listen` is polled).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// Give up after this many seconds (exit 75).
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

/// `certgate status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The config file of the running `certgate serve` (its `[admin] listen` is asked).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// Print the status document as JSON (the admin listener's `/status`).
    #[arg(long)]
    pub json: bool,
}

/// `certgate check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config file.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Key algorithms for new keys.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KeyTypeArg {
    /// ECDSA P-256 (default).
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    /// Ed25519.
    Ed25519,
    /// RSA 3072.
    Rsa3072,
}

/// `certgate ca ...`.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a CA in a new directory (ca.pem, ca.key with mode 0600, index.tsv, crlnumber).
    Init {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "certgate CA")]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Key algorithm.
        #[arg(long, value_enum, default_value = "ecdsa-p256")]
        key_type: KeyTypeArg,
    },
    /// Issue a server or client certificate with a fresh key.
    Issue(IssueArgs),
    /// Revoke a certificate by serial (hex) or by its certificate file.
    Revoke {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Serial number (hex, colons allowed) or a certificate file.
        #[arg(value_name = "SERIAL|CERT_FILE")]
        what: String,
        /// Why it is revoked (RFC 5280 reason code).
        #[arg(long, default_value = "unspecified", value_parser = clap::builder::PossibleValuesParser::new([
            "unspecified",
            "key-compromise",
            "ca-compromise",
            "affiliation-changed",
            "superseded",
            "cessation-of-operation",
            "privilege-withdrawn",
        ]))]
        reason: String,
    },
    /// Renew a certificate this CA issued: the same names, kind and CRL distribution points,
    /// a new validity, and the same key unless `--new-key` (written in place of the old files;
    /// the old certificate stays valid until it expires or is revoked).
    Renew {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The certificate to renew (PEM).
        #[arg(value_name = "CERT")]
        cert: PathBuf,
        /// Its private key (PKCS#8 PEM). Default: CERT with `.key` for `.pem`.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Validity of the renewed certificate in days. Default: that of the old one.
        #[arg(long)]
        days: Option<u32>,
        /// Make a new key (written next to the certificate, mode 0600) instead of keeping it.
        #[arg(long)]
        new_key: bool,
    },
    /// Check the CA's index against its records on a transparency log (`[ca] log` in
    /// DIR/ca.toml): every certificate in the index must have its issue (or renewal) record,
    /// and its revocation if revoked; every record on the log must be in the index. Exit 0
    /// when they agree, 65 when not.
    Audit {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The log's base URL. Default: `log` in DIR/ca.toml.
        #[arg(long, value_name = "URL")]
        log: Option<String>,
        /// CA certificate(s) for the log server. Default: `log_ca` in DIR/ca.toml.
        #[arg(long, value_name = "FILE")]
        ca: Vec<PathBuf>,
        /// The log's verifier key text or a file holding it. Default: `log_vkey` in
        /// DIR/ca.toml.
        #[arg(long)]
        vkey: Vec<String>,
        /// Where the last verified checkpoint is kept. Default: DIR/records/log-state.
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sign a CRL of every revoked certificate.
    Crl {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Where to write the CRL (PEM). Default: DIR/crl.pem.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Days until nextUpdate: verifiers reject the CRL after that, so publish a new one before.
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
}

/// `certgate ca issue`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("kind").required(true).args(["server", "client"])))]
pub struct IssueArgs {
    /// The CA directory.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Issue a TLS server certificate (EKU serverAuth). NAME is also a DNS (or IP) SAN.
    #[arg(long)]
    pub server: bool,
    /// Issue a TLS client certificate (EKU clientAuth).
    #[arg(long)]
    pub client: bool,
    /// The certificate's common name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// DNS subject alternative name (repeatable).
    #[arg(long, value_name = "NAME")]
    pub dns: Vec<String>,
    /// IP address subject alternative name (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub ip: Vec<std::net::IpAddr>,
    /// URI subject alternative name, e.g. a SPIFFE ID (repeatable).
    #[arg(long, value_name = "URI")]
    pub uri: Vec<String>,
    /// Email subject alternative name (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub email: Vec<String>,

    /// CRL distribution point written into the certificate (`http://` URL, repeatable): where
    /// verifiers fetch the CA's CRL, e.g. the URL `serve` publishes with `[ca] publish`.
    #[arg(long = "crl-url", value_name = "URL")]
    pub crl_url: Vec<String>,
    /// Validity in days.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Key algorithm of the new key.
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    pub key_type: KeyTypeArg,
    /// Output prefix: writes PREFIX.pem and PREFIX.key (0600). Default: DIR/NAME.
    #[arg(long, value_name = "PREFIX")]
    pub out: Option<PathBuf>,
    /// Also write PREFIX.p12 (PKCS#12 with the CA certificate), for browsers, Java and curl.
    #[arg(long)]
    pub p12: bool,
    /// Password for the .p12 (first line of the file). Without it a random one is written to
    /// PREFIX.p12.password (0600).
    #[arg(long, value_name = "FILE", requires = "p12")]
    pub password_file: Option<PathBuf>,
    /// Replace PREFIX.pem/.key/.p12 if they exist (otherwise issuing over them is refused).
    #[arg(long)]
    pub force: bool,
}

/// Purposes a certificate can be verified for.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PurposeArg {
    /// TLS client authentication.
    Client,
    /// TLS server authentication.
    Server,
}

/// `certgate inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Files to describe (PEM or DER certificates, keys, PKCS#12, CRLs, CSRs).
    #[arg(required_unless_present = "header", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// A forwarded-certificate header to decode instead, as `Name: value` (e.g. from a WAF log).
    #[arg(long, value_name = "'NAME: VALUE'", conflicts_with = "files")]
    pub header: Option<String>,
    /// The header's format: rfc9440, xfcc, nginx, traefik, aws-alb, cloudflare, base64-der.
    /// Default: guessed from the header name.
    #[arg(long, value_name = "FORMAT", requires = "header")]
    pub format: Option<String>,
    /// Verify the certificates in each file against these CA certificates (repeatable).
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<PathBuf>,
    /// CRLs to check revocation against (repeatable; needs --ca).
    #[arg(long, value_name = "FILE", requires = "ca")]
    pub crl: Vec<PathBuf>,
    /// What to verify for.
    #[arg(long, value_enum, default_value = "client", requires = "ca")]
    pub purpose: PurposeArg,
    /// Password for encrypted keys and PKCS#12 files: first line of this file.
    #[arg(long, value_name = "FILE", conflicts_with = "password_env")]
    pub password_file: Option<PathBuf>,
    /// Password for encrypted keys and PKCS#12 files: this environment variable.
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `certgate log ...`.
#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Create a log: its signing key (log.key, mode 0600), verifier key (log.vkey) and store.
    Init {
        /// The log's origin, e.g. `log.home.example/certgate` (also the key's name).
        #[arg(long)]
        origin: String,
        /// The log's data directory (`[log] data_dir`).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Create a witness's cosigning key (`[witness] key`, mode 0600) and print its verifier
    /// key (also in FILE.vkey), which logs list in `[[log.witness]]` and verifiers in `--witness`.
    WitnessKey {
        /// The witness's name, e.g. `witness.home.example`.
        #[arg(long)]
        name: String,
        /// Where to write the key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Copy an embedded log (stop the serve that holds it first) into PostgreSQL, then read
    /// it all back and prove it the same: every entry and stored hash, the root and the signed
    /// checkpoint. Run again on a copied database, it only checks.
    Migrate {
        /// The log's data directory (log.redb, log.key).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The database, e.g. `postgres://certgate@127.0.0.1/certgate`.
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Append a file's bytes to a running log over mTLS; writes the tlog-proof it answers with.
    Add(LogAddArgs),
    /// Fetch a log's checkpoint, verify it, and check it is consistent with the last one seen.
    Checkpoint(LogCheckpointArgs),
    /// Verify a signed note against verifier keys (exit 0 when it verifies, 65 otherwise).
    VerifyNote {
        /// Verifier key text (`name+id+key`) or a file holding it; repeat for several.
        #[arg(long, required = true)]
        vkey: Vec<String>,
        /// The note.
        file: PathBuf,
    },
    /// Print an inclusion proof (`--index`) or a consistency proof (`--consistency OLD NEW`)
    /// from a running log's tiles, verified against its signed checkpoint.
    Prove(LogProveArgs),
}

/// Where a log is and how to trust it.
#[derive(Debug, Args)]
pub struct LogRemote {
    /// The log's base URL, e.g. `https://127.0.0.1:8444`.
    #[arg(long)]
    pub url: String,
    /// CA certificate(s) for the log server's TLS certificate.
    #[arg(long, value_name = "FILE", required = true)]
    pub ca: Vec<PathBuf>,
}

/// `certgate log add`.
#[derive(Debug, Args)]
pub struct LogAddArgs {
    /// The file whose bytes become the entry (at most 65,535 bytes).
    pub file: PathBuf,
    #[command(flatten)]
    pub remote: LogRemote,
    /// Client certificate (PEM chain) of a writer.
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// Its key.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The key's password, from a file.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Where to write the tlog-proof (default: FILE.tlog-proof).
    #[arg(long, value_name = "FILE")]
    pub proof_out: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `certgate log checkpoint`.
#[derive(Debug, Args)]
pub struct LogCheckpointArgs {
    /// The log's base URL, e.g. `https://log.example:8444`.
    pub url: String,
    /// CA certificate(s) for the log server's TLS certificate.
    #[arg(long, value_name = "FILE", required = true)]
    pub ca: Vec<PathBuf>,
    /// The log's verifier key text or a file holding it; repeat for several (rotation).
    #[arg(long, required = true)]
    pub vkey: Vec<String>,
    /// The log's origin (default: the first key's name).
    #[arg(long)]
    pub origin: Option<String>,
    /// A witness's cosignature key (type 0x04), text or file; repeat for several.
    #[arg(long)]
    pub witness: Vec<String>,
    /// How many witnesses must have cosigned (default: all given).
    #[arg(long)]
    pub quorum: Option<usize>,
    /// Where the last verified checkpoint per origin is kept.
    #[arg(long, value_name = "DIR", default_value = "certgate-log-state")]
    pub state: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `certgate log prove`.
#[derive(Debug, Args)]
pub struct LogProveArgs {
    #[command(flatten)]
    pub remote: LogRemote,
    /// The log's verifier key text or a file holding it.
    #[arg(long, required = true)]
    pub vkey: Vec<String>,
    /// The log's origin (default: the first key's name).
    #[arg(long)]
    pub origin: Option<String>,
    /// Prove the inclusion of this entry index (prints a tlog-proof).
    #[arg(long, conflicts_with = "consistency")]
    pub index: Option<u64>,
    /// Prove that the tree of OLD entries is a prefix of the tree of NEW entries.
    #[arg(long, num_args = 2, value_names = ["OLD", "NEW"])]
    pub consistency: Option<Vec<u64>>,
}

/// `certgate trust ...`.
#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Create a publisher's Ed25519 signing key (mode 0600) and print its verifier key.
    Keygen {
        /// The key's name, e.g. `publisher.example/my-addons`.
        #[arg(long)]
        name: String,
        /// Where to write the key; the verifier key goes to OUT.pub.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Encrypt the key with the password in this file (PBKDF2 + AES-256-GCM).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Sign "trusted" for an artifact and record it in the log; writes a proof bundle.
    #[command(disable_version_flag = true)]
    Sign(TrustSignArgs),
    /// Sign "untrusted" for an artifact (a bad release) and record it.
    #[command(disable_version_flag = true)]
    Untrust(TrustSignArgs),
    /// Sign "unsupported" for an artifact and record it.
    #[command(disable_version_flag = true)]
    Unsupport(TrustSignArgs),
    /// Revoke a signing key: every statement by it then verifies as REVOKED.
    RevokeKey(TrustRevokeArgs),
    /// Verify an artifact: exit 0 TRUSTED, 1 UNTRUSTED, 2 UNKNOWN, 3 UNSUPPORTED, 4 REVOKED,
    /// 64 and above when it could not check.
    Verify(TrustVerifyArgs),
    /// The history of statements about an artifact.
    Status(TrustStatusArgs),
}

/// What is signed or verified: a file or directory, or a digest.
#[derive(Debug, Args)]
pub struct TrustSubject {
    /// A file (its bytes) or a directory (its tree digest).
    #[arg(required_unless_present = "digest", conflicts_with = "digest")]
    pub path: Option<PathBuf>,
    /// A digest instead of a path: `sha256:<hex>`.
    #[arg(long)]
    pub digest: Option<String>,
    /// What the digest is of: `digest` (default) or `oci` (an OCI manifest digest).
    #[arg(long, requires = "digest", value_parser = ["digest", "oci"])]
    pub kind: Option<String>,
}

/// Where statements are submitted, over mTLS.
#[derive(Debug, Args)]
pub struct TrustSubmit {
    /// The log's base URL.
    #[arg(long)]
    pub log: String,
    /// CA certificate(s) for the log server.
    #[arg(long, value_name = "FILE", required = true)]
    pub ca: Vec<PathBuf>,
    /// The writer's client certificate for the log.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: PathBuf,
    /// Its key.
    #[arg(long, value_name = "FILE")]
    pub tls_key: PathBuf,
}

/// `certgate trust sign|untrust|unsupport`.
#[derive(Debug, Args)]
pub struct TrustSignArgs {
    #[command(flatten)]
    pub subject: TrustSubject,
    /// The artifact's name (the namespace policies trust signers for).
    #[arg(long)]
    pub name: Option<String>,
    /// The artifact's version.
    #[arg(long)]
    pub version: Option<String>,
    /// The publisher's signing key (from `trust keygen`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The signing key's password, when it is encrypted.
    #[arg(long, value_name = "FILE")]
    pub key_password_file: Option<PathBuf>,
    #[command(flatten)]
    pub submit: TrustSubmit,
    /// Where to write the proof bundle (default: PATH.tlog-proof, or DIGEST.tlog-proof).
    #[arg(long, value_name = "FILE")]
    pub proof_out: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `certgate trust revoke-key`.
#[derive(Debug, Args)]
pub struct TrustRevokeArgs {
    /// The signing key to revoke.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Its password, when it is encrypted.
    #[arg(long, value_name = "FILE")]
    pub key_password_file: Option<PathBuf>,
    #[command(flatten)]
    pub submit: TrustSubmit,
}

/// How a verifier reaches the log.
#[derive(Debug, Args)]
pub struct TrustLogAccess {
    /// The policy file (log keys, witnesses, trusted signers, staleness).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// The log's base URL (default: the policy's `log_url`).
    #[arg(long)]
    pub log: Option<String>,
    /// CA certificate(s) for the log server.
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<PathBuf>,
    /// Where the last verified checkpoint and the synced statements are kept.
    #[arg(long, value_name = "DIR", default_value = "certgate-trust-state")]
    pub state: PathBuf,
}

/// `certgate trust verify`.
#[derive(Debug, Args)]
pub struct TrustVerifyArgs {
    #[command(flatten)]
    pub subject: TrustSubject,
    #[command(flatten)]
    pub access: TrustLogAccess,
    /// A proof bundle (default with --offline: PATH.tlog-proof).
    #[arg(long, value_name = "FILE")]
    pub proof: Option<PathBuf>,
    /// Use only the proof bundle: proves inclusion, says nothing about freshness.
    #[arg(long)]
    pub offline: bool,
    /// Print the true status loudly and exit 0 whatever it is.
    #[arg(long)]
    pub force: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `certgate trust status`.
#[derive(Debug, Args)]
pub struct TrustStatusArgs {
    #[command(flatten)]
    pub subject: TrustSubject,
    #[command(flatten)]
    pub access: TrustLogAccess,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// Every subcommand's arguments are consistent (clap checks names, groups, conflicts).
    #[test]
    fn cli_definition_is_valid() {
        super::Cli::command().debug_assert();
    }
}
