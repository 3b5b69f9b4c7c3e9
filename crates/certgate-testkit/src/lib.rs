//! Test support for certgate: a test PKI generated at test time (rcgen), and helpers to find and
//! run real peers (`openssl`, `curl`, `python3`).
//!
//! Peer rule: a test that needs a peer which is absent skips with a loud message, unless
//! `CERTGATE_REQUIRE_PEERS=1` (set by `.ci/run`), where it fails.

#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_debug_implementations
)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// SAN kinds for [`Spec::sans`].
pub use rcgen::SanType as San;

/// Whether missing peers are failures (CI) rather than skips.
pub fn peers_required() -> bool {
    std::env::var("CERTGATE_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// Finds a peer program on `PATH`. When it is missing: panics under `CERTGATE_REQUIRE_PEERS=1`,
/// otherwise prints a loud skip message and returns `None`.
pub fn peer(program: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let package = match program {
            "nginx" => "the Debian package `nginx-light`".to_owned(),
            "nghttp" | "h2load" => "the Debian package `nghttp2-client`".to_owned(),
            "jetforce" => "the Python package `jetforce` (pip)".to_owned(),
            other => format!("the Debian package `{other}`"),
        };
        if peers_required() {
            panic!(
                "peer `{program}` is required (CERTGATE_REQUIRE_PEERS=1) but not on PATH; install {package} (scripts/test does)"
            );
        }
        eprintln!(
            "\n!!!!!!!! SKIPPING: peer `{program}` is not installed ({package}); this test did not run !!!!!!!!\n"
        );
    }
    found
}

/// Returns early from a test when a peer is missing (see [`peer`]).
#[macro_export]
macro_rules! require_peer {
    ($name:expr) => {
        match $crate::peer($name) {
            Some(p) => p,
            None => return,
        }
    };
}

/// Runs a command, panicking with its output when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Command-line arguments: a `&str` is split on whitespace (for literal command lines), a slice
/// is taken as is (for arguments built at run time).
pub trait Argv {
    /// The arguments.
    fn argv(&self) -> Vec<String>;
}

impl Argv for &str {
    fn argv(&self) -> Vec<String> {
        self.split_whitespace().map(str::to_owned).collect()
    }
}

impl Argv for &[&str] {
    fn argv(&self) -> Vec<String> {
        self.iter().map(|s| (*s).to_owned()).collect()
    }
}

impl<const N: usize> Argv for &[&str; N] {
    fn argv(&self) -> Vec<String> {
        self.iter().map(|s| (*s).to_owned()).collect()
    }
}

impl Argv for &Vec<&str> {
    fn argv(&self) -> Vec<String> {
        self.iter().map(|s| (*s).to_owned()).collect()
    }
}

/// Runs `openssl` with `args` in `dir`, panicking when it fails.
pub fn openssl(openssl: &Path, dir: &Path, args: impl Argv) -> Output {
    run_ok(Command::new(openssl).current_dir(dir).args(args.argv()))
}

/// A certificate with its key, as produced by [`TestPki`].
pub struct Cert {
    /// DER certificate.
    pub der: Vec<u8>,
    /// PEM certificate.
    pub pem: String,
    /// PKCS#8 PEM key.
    pub key_pem: String,
    /// The key.
    pub key: KeyPair,
    /// The parameters it was made from (to issue further certificates).
    pub params: CertificateParams,
}

impl Cert {
    fn new(cert: &rcgen::Certificate, key: KeyPair, params: CertificateParams) -> Self {
        Self {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key,
            params,
        }
    }

    /// An issuer for signing with this certificate.
    pub fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// Writes `NAME.pem` and `NAME.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

/// What kind of certificate to make.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Common name.
    pub cn: String,
    /// CA with this path length (`None` = leaf).
    pub ca_path_len: Option<Option<u8>>,
    /// EKUs (leaf only).
    pub eku: Vec<ExtendedKeyUsagePurpose>,
    /// Key usages (empty = the usual for the kind).
    pub key_usage: Vec<KeyUsagePurpose>,
    /// SANs.
    pub sans: Vec<SanType>,
    /// Validity start relative to now.
    pub not_before: Duration,
    /// Validity end relative to now.
    pub not_after: Duration,
    /// Add an unknown critical extension.
    pub unknown_critical: bool,
    /// Serial.
    pub serial: Option<u64>,
}

impl Spec {
    /// A CA that may issue `path_len` levels of intermediates (`None` = unconstrained).
    pub fn ca(cn: &str, path_len: Option<u8>) -> Self {
        Self {
            cn: cn.to_owned(),
            ca_path_len: Some(path_len),
            eku: vec![],
            key_usage: vec![],
            sans: vec![],
            not_before: Duration::days(-1),
            not_after: Duration::days(365),
            unknown_critical: false,
            serial: None,
        }
    }

    /// A TLS client leaf.
    pub fn client(cn: &str) -> Self {
        Self {
            ca_path_len: None,
            eku: vec![ExtendedKeyUsagePurpose::ClientAuth],
            ..Self::ca(cn, None)
        }
    }

    /// A TLS server leaf for `localhost`.
    pub fn server(cn: &str) -> Self {
        Self {
            ca_path_len: None,
            eku: vec![ExtendedKeyUsagePurpose::ServerAuth],
            sans: vec![
                SanType::DnsName("localhost".try_into().unwrap()),
                SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
            ],
            ..Self::ca(cn, None)
        }
    }

    fn params(&self) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, self.cn.as_str());
        let now = OffsetDateTime::now_utc();
        p.not_before = now + self.not_before;
        p.not_after = now + self.not_after;
        p.subject_alt_names = self.sans.clone();
        p.serial_number = Some(SerialNumber::from(
            self.serial
                .unwrap_or_else(|| rand_u64() & 0x7fff_ffff_ffff_ffff | 1),
        ));
        p.key_identifier_method = KeyIdMethod::Sha256;
        match self.ca_path_len {
            Some(len) => {
                p.is_ca = IsCa::Ca(match len {
                    Some(n) => BasicConstraints::Constrained(n),
                    None => BasicConstraints::Unconstrained,
                });
                p.key_usages = if self.key_usage.is_empty() {
                    vec![
                        KeyUsagePurpose::KeyCertSign,
                        KeyUsagePurpose::CrlSign,
                        KeyUsagePurpose::DigitalSignature,
                    ]
                } else {
                    self.key_usage.clone()
                };
            }
            None => {
                p.is_ca = IsCa::ExplicitNoCa;
                p.extended_key_usages = self.eku.clone();
                p.key_usages = if self.key_usage.is_empty() {
                    vec![KeyUsagePurpose::DigitalSignature]
                } else {
                    self.key_usage.clone()
                };
                p.use_authority_key_identifier_extension = true;
            }
        }
        if self.unknown_critical {
            let mut ext =
                CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 55555, 1], vec![0x05, 0x00]);
            ext.set_criticality(true);
            p.custom_extensions.push(ext);
        }
        p
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// Makes a self-signed certificate from `spec`.
pub fn self_signed(spec: &Spec) -> Cert {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = spec.params();
    let cert = params.self_signed(&key).unwrap();
    Cert::new(&cert, key, params)
}

/// Makes a certificate from `spec` signed by `issuer`.
pub fn signed_by(spec: &Spec, issuer: &Cert) -> Cert {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = spec.params();
    let cert = params.signed_by(&key, &issuer.issuer()).unwrap();
    Cert::new(&cert, key, params)
}

/// A CRL signed by `issuer` revoking `serials`, valid from a day ago for `valid_days`.
pub fn crl(issuer: &Cert, serials: &[Vec<u8>], valid_days: i64) -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    let params = CertificateRevocationListParams {
        this_update: now - Duration::days(1),
        next_update: now + Duration::days(valid_days),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from_slice(s),
                revocation_time: now - Duration::hours(1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    params.signed_by(&issuer.issuer()).unwrap().der().to_vec()
}

/// A CRL by `issuer` with CRL number `number`, issued a minute ago and valid for
/// `valid_for` (negative: already past its nextUpdate), revoking `serials`.
pub fn crl_numbered(
    issuer: &Cert,
    serials: &[Vec<u8>],
    number: u64,
    valid_for: Duration,
) -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    let params = CertificateRevocationListParams {
        this_update: now - Duration::minutes(1),
        next_update: now + valid_for,
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from_slice(s),
                revocation_time: now - Duration::minutes(1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    params.signed_by(&issuer.issuer()).unwrap().der().to_vec()
}

/// The serial bytes of a [`Cert`].
pub fn serial_of(cert: &Cert) -> Vec<u8> {
    cert.params.serial_number.as_ref().unwrap().to_bytes()
}

/// A three-level PKI: root → intermediate → client and server leaves.
pub struct TestPki {
    /// Root CA.
    pub root: Cert,
    /// Intermediate CA (path length 0).
    pub intermediate: Cert,
    /// Client leaf issued by the intermediate.
    pub client: Cert,
    /// Server leaf issued by the intermediate.
    pub server: Cert,
}

impl TestPki {
    /// Generates a fresh PKI.
    pub fn new() -> Self {
        Self::named("certgate test")
    }

    /// Generates a fresh PKI whose CAs are called `<prefix> root` and `<prefix> intermediate`
    /// (two PKIs with different prefixes are told apart by CA name, as servers' CA hints do).
    pub fn named(prefix: &str) -> Self {
        let root = self_signed(&Spec::ca(&format!("{prefix} root"), Some(1)));
        let intermediate = signed_by(&Spec::ca(&format!("{prefix} intermediate"), Some(0)), &root);
        let client = signed_by(&Spec::client("alice"), &intermediate);
        let server = signed_by(&Spec::server("localhost"), &intermediate);
        Self {
            root,
            intermediate,
            client,
            server,
        }
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

/// A temporary directory that lives as long as the value.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("certgate-test-")
        .tempdir()
        .unwrap()
}

/// Encrypts a PKCS#8 PEM key as `ENCRYPTED PRIVATE KEY` (PBES2, PBKDF2-SHA256, AES-256-CBC), the
/// form `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes. Salt and IV are fixed: tests only.
pub fn encrypt_pkcs8_pem(key_pem: &str, password: &str) -> String {
    use base64::Engine as _;
    use pkcs8::der::Encode as _;
    let b64: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let params = pkcs8::pkcs5::pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(
        2048, &[7u8; 16], [9u8; 16],
    )
    .unwrap();
    let scheme = pkcs8::pkcs5::EncryptionScheme::Pbes2(params);
    let ciphertext = scheme.encrypt(password, &der).unwrap();
    let info = pkcs8::EncryptedPrivateKeyInfoOwned {
        encryption_algorithm: scheme,
        encrypted_data: pkcs8::der::asn1::OctetString::new(ciphertext).unwrap(),
    };
    let out = base64::engine::general_purpose::STANDARD.encode(info.to_der().unwrap());
    let mut pem = String::from("-----BEGIN ENCRYPTED PRIVATE KEY-----\n");
    for chunk in out.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END ENCRYPTED PRIVATE KEY-----\n");
    pem
}

/// A PostgreSQL server of its own for one test: a fresh cluster in a temporary directory on a
/// free loopback port, stopped (immediately) when dropped. Debian keeps the server programs
/// in `/usr/lib/postgresql/VERSION/bin`, off `PATH`; they are found there too. As root, the
/// cluster belongs to the `postgres` user (the server refuses to run as root).
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Its loopback port.
    pub port: u16,
    as_postgres: bool,
    /// Server options beyond the port and socket (TLS).
    extra: String,
}

impl Postgres {
    /// Starts the server, or returns `None` (or panics under `CERTGATE_REQUIRE_PEERS=1`) when
    /// PostgreSQL is not installed.
    pub fn start() -> Option<Self> {
        Self::start_with(None)
    }

    /// [`Postgres::start`], with TLS (`ssl = on`) on this certificate chain and key (PEM).
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Option<Self> {
        Self::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                let mut v: Vec<PathBuf> = versions
                    .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                    .filter(|b| b.join("initdb").is_file())
                    .collect();
                v.sort();
                v.pop()
            })
            .or_else(|| peer("initdb").and_then(|p| p.parent().map(Path::to_path_buf)));
        let Some(bin) = bin else {
            let why = "PostgreSQL is not installed (Debian package `postgresql`; scripts/test installs it)";
            assert!(!peers_required(), "{why}");
            eprintln!("\n!!!!!!!! SKIPPING: {why}; this test did not run !!!!!!!!\n");
            return None;
        };
        let dir = tempdir();
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let pg = Self {
            dir,
            bin,
            port: {
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
                l.local_addr().expect("its address").port()
            },
            as_postgres,
            extra: String::new(),
        };
        let mut pg = pg;
        if let Some((cert, key)) = tls {
            let (c, k) = (
                pg.dir.path().join("server.crt"),
                pg.dir.path().join("server.key"),
            );
            std::fs::write(&c, cert).expect("write the server certificate");
            std::fs::write(&k, key).expect("write the server key");
            {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600))
                    .expect("key mode");
            }
            pg.extra = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                c.display(),
                k.display()
            );
        }
        if as_postgres {
            run_ok(
                Command::new("chown")
                    .args(["-R", "postgres:"])
                    .arg(pg.dir.path()),
            );
        }
        let data = pg.dir.path().join("data");
        run_ok(pg.command("initdb").arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]));
        pg.ctl("start");
        Some(pg)
    }

    fn command(&self, program: &str) -> Command {
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(program));
            c
        } else {
            Command::new(self.bin.join(program))
        }
    }

    /// `pg_ctl start|stop|restart`, waiting until it is done.
    pub fn ctl(&self, action: &str) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1{}",
            self.port,
            self.dir.path().display(),
            self.extra
        );
        let mut c = self.command("pg_ctl");
        c.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-o", &options, "-l"])
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-m", "fast", action]);
        run_ok(&mut c);
    }

    /// The connection URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-w", "-m", "immediate", "stop"])
            .output();
    }
}
