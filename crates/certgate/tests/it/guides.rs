//! Every guide in `docs/guides/` runs as written: its code blocks, in order, in a fresh
//! directory with this build's `certgate` first on `PATH`, against real peers.
//!
//! A guide marks each block by the words after its opening fence:
//!
//! - `sh`: commands, run as one `bash -euo pipefail` script in the guide's directory. Processes
//!   started with `&` keep running until the guide ends (then their process group is killed).
//! - `LANG file=NAME` (`toml file=certgate.toml`, `nginx file=nginx.conf`, ...): a complete file
//!   the reader saves as `NAME`; written before the next block runs.
//! - `toml check`: a config for a setup this machine cannot have (a cloud load balancer, say);
//!   saved and validated with `certgate check`, which must pass.
//! - `text output`: what the `sh` block before it prints; each line is found, in order, in the
//!   block's output (stdout and stderr).
//! - `text`: prose in a box (a file format, a directory listing); not run.
//!
//! Any other block fails the test: a guide cannot show a command or config that is not run. The
//! only substitutions are the ports a test declares: each is replaced, as a whole number, by a
//! free port, so guides can say `8443` and tests run side by side.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use certgate_testkit::{require_peer, tempdir};

/// How long one block may run.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// A fenced code block of a guide.
struct Block {
    /// The words after the opening fence.
    info: Vec<String>,
    text: String,
    /// 1-based line of the opening fence, for messages.
    line: usize,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in markdown.lines().enumerate() {
        match &mut open {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    open = Some(Block {
                        info: info.split_whitespace().map(str::to_owned).collect(),
                        text: String::new(),
                        line: i + 1,
                    });
                }
            }
            Some(block) => {
                if line.trim_end() == "```" {
                    out.extend(open.take());
                } else {
                    block.text.push_str(line);
                    block.text.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "a code block is not closed");
    out
}

/// Replaces each of `ports` where it stands as a whole number.
fn substitute(text: &str, ports: &[(u16, u16)]) -> String {
    let mut out = text.to_owned();
    for (from, to) in ports {
        let from = from.to_string();
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(at) = rest.find(&from) {
            let before = rest[..at].chars().next_back();
            let after = rest[at + from.len()..].chars().next();
            result.push_str(&rest[..at]);
            let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
            if digit(before) || digit(after) {
                result.push_str(&from);
            } else {
                result.push_str(&to.to_string());
            }
            rest = &rest[at + from.len()..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// A guide being followed: its directory and the process groups it started.
struct Reader {
    guide: &'static str,
    dir: tempfile::TempDir,
    logs: tempfile::TempDir,
    path: std::ffi::OsString,
    /// Variables the guide tells its reader to set (`DATABASE_URL`, say), as the test sets them.
    env: Vec<(String, String)>,
    groups: Vec<u32>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        for signal in ["-TERM", "-KILL"] {
            for group in &self.groups {
                let _ = Command::new("kill")
                    .args([signal, "--", &format!("-{group}")])
                    .stderr(Stdio::null())
                    .status();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Reader {
    fn new(guide: &'static str) -> Self {
        let dir = tempdir();
        // Peers that drop privileges (nginx workers) must be able to enter it.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_certgate"));
        let mut paths = vec![bin.parent().unwrap().to_owned()];
        paths.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        Self {
            guide,
            dir,
            logs: tempdir(),
            path: std::env::join_paths(paths).unwrap(),
            env: Vec::new(),
            groups: Vec::new(),
        }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs a shell block; returns its output.
    fn sh(&mut self, block: &Block, script: &str) -> String {
        let log = self.logs.path().join(format!("line-{}.out", block.line));
        let out = std::fs::File::create(&log).unwrap();
        let mut child: Child = {
            use std::os::unix::process::CommandExt as _;
            Command::new("bash")
                .args(["-euo", "pipefail", "-c", script])
                .current_dir(self.dir())
                .env("PATH", &self.path)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .process_group(0)
                .spawn()
                .expect("run bash")
        };
        self.groups.push(child.id());
        let deadline = Instant::now() + BLOCK_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                panic!(
                    "{}:{}: the block did not finish in {BLOCK_TIMEOUT:?}:\n{script}\noutput:\n{output}",
                    self.guide, block.line
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            status.success(),
            "{}:{}: the block failed ({status}):\n{script}\noutput:\n{output}",
            self.guide,
            block.line
        );
        output
    }
}

/// Follows `guide` (a file in `docs/guides/`) block by block, with `ports` replaced by free
/// ones. `peers` are the programs it needs.
fn follow(guide: &'static str, ports: &[u16], peers: &[&str]) {
    follow_with(guide, ports, peers, &[]);
}

/// [`follow`], with environment variables the guide asks its reader to set.
fn follow_with(guide: &'static str, ports: &[u16], peers: &[&str], env: &[(&str, String)]) {
    for p in peers {
        if certgate_testkit::peer(p).is_none() {
            return;
        }
    }
    let _ = require_peer!("bash");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/guides")
        .join(guide);
    let markdown = std::fs::read_to_string(&path).unwrap();
    let ports: Vec<(u16, u16)> = ports.iter().map(|p| (*p, crate::free_port())).collect();
    let mut reader = Reader::new(guide);
    reader.env = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let mut last_output: Option<(usize, String)> = None;
    let mut ran = 0;
    for block in blocks(&markdown) {
        let text = substitute(&block.text, &ports);
        let at = format!("{guide}:{}", block.line);
        let info: Vec<&str> = block.info.iter().map(String::as_str).collect();
        match info.as_slice() {
            ["sh"] => {
                last_output = Some((block.line, reader.sh(&block, &text)));
                ran += 1;
            }
            [_, file] if file.starts_with("file=") => {
                let name = &file["file=".len()..];
                let to = reader.dir().join(name);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent).unwrap();
                }
                std::fs::write(to, &text).unwrap();
            }
            ["toml", "check"] => {
                let name = format!("check-{}.toml", block.line);
                std::fs::write(reader.dir().join(&name), &text).unwrap();
                let out = crate::certgate(reader.dir(), ["check", "--config", &name].as_slice());
                assert!(
                    out.status.success(),
                    "{at}: `certgate check` refuses the config:\n{text}\n{}",
                    crate::text(&out)
                );
                ran += 1;
            }
            ["text", "output"] => {
                let Some((line, output)) = &last_output else {
                    panic!("{at}: an output block without a command block before it");
                };
                let mut lines = output.lines();
                for want in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    assert!(
                        lines.any(|got| got.contains(want)),
                        "{at}: the commands at line {line} did not print `{want}` (in order); they printed:\n{output}"
                    );
                }
            }
            ["text"] => {}
            other => panic!(
                "{at}: a code block marked {other:?}; guides mark blocks `sh`, `LANG file=NAME`, `toml check`, `text output` or `text` (see tests/it/guides.rs)"
            ),
        }
    }
    assert!(ran > 0, "{guide}: nothing ran");
}

#[test]
fn substitution_replaces_whole_numbers_only() {
    let s = substitute("a 8443 b 18443 c 84430 :8443/", &[(8443, 1234)]);
    assert_eq!(s, "a 1234 b 18443 c 84430 :1234/");
}

#[test]
fn behind_a_waf() {
    follow(
        "behind-a-waf.md",
        &[9443, 9444, 8443, 8444, 9090, 9091],
        &["nginx", "haproxy", "curl", "python3"],
    );
}

#[test]
fn gemini() {
    follow(
        "gemini.md",
        &[1965, 8080, 9090],
        &["openssl", "python3", "sha256sum"],
    );
}

#[test]
fn transient_certs() {
    follow(
        "transient-certs.md",
        &[8443, 9090],
        &["openssl", "curl", "sha256sum"],
    );
}

#[test]
fn content_trust() {
    follow(
        "content-trust.md",
        &[8444, 9090, 9460, 9461, 3140],
        &["base64", "head", "openssl", "curl"],
    );
}

#[test]
fn http_app() {
    follow("http-app.md", &[8443, 8080, 9901], &["curl", "python3"]);
}

#[test]
fn egress() {
    follow(
        "egress.md",
        &[9443, 3128, 1884, 9901],
        &["openssl", "curl", "python3"],
    );
}

#[test]
fn witness_a_log() {
    follow("witness-a-log.md", &[8444, 8446, 9090, 9091], &["curl"]);
}

#[test]
fn log_on_postgres() {
    let Some(pg) = certgate_testkit::Postgres::start() else {
        return;
    };
    follow_with(
        "log-on-postgres.md",
        &[8440, 8444, 8445, 9090, 9091],
        &["haproxy", "curl"],
        &[("DATABASE_URL", pg.url())],
    );
}

/// The guides the tests above follow; every guide must be one of them.
const FOLLOWED: &[&str] = &[
    "behind-a-waf.md",
    "gemini.md",
    "transient-certs.md",
    "content-trust.md",
    "http-app.md",
    "egress.md",
    "witness-a-log.md",
    "log-on-postgres.md",
];

#[test]
fn every_guide_is_followed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/guides");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            !name.ends_with(".md") || FOLLOWED.contains(&name.as_str()),
            "docs/guides/{name} has no test that follows it"
        );
    }
}
