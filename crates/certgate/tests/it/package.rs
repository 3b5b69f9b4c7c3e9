//! The Debian package: `scripts/deb` builds it, it installs with `dpkg -i`, its default config
//! passes `certgate check`, systemd accepts its unit, and its man pages and completions are
//! where the system looks for them. Needs root (it installs the package and purges it after).

use std::path::Path;
use std::process::Command;

use certgate_testkit::{require_peer, run_ok, tempdir};

/// Purges the package when the test ends, however it ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "certgate"]).output();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn the_debian_package_installs_and_its_unit_and_config_check_out() {
    let dpkg = require_peer!("dpkg");
    let _ = require_peer!("dpkg-deb");
    let analyze = require_peer!("systemd-analyze");
    let man = require_peer!("man");
    if !is_root() {
        assert!(
            !certgate_testkit::peers_required(),
            "installing the package needs root"
        );
        eprintln!("!!!!!!!! SKIPPING: installing the package needs root !!!!!!!!");
        return;
    }
    let out = tempdir();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let built = run_ok(
        Command::new(root.join("scripts/deb"))
            .args(["--binary", env!("CARGO_BIN_EXE_certgate"), "--out"])
            .arg(out.path()),
    );
    let deb = String::from_utf8(built.stdout).unwrap().trim().to_owned();
    assert!(deb.ends_with(".deb"), "{deb}");
    let contents = run_ok(Command::new("dpkg-deb").args(["--contents", &deb]));
    let contents = String::from_utf8_lossy(&contents.stdout);
    for path in [
        "./usr/bin/certgate",
        "./lib/systemd/system/certgate.service",
        "./etc/certgate/certgate.toml",
        "./usr/share/man/man1/certgate.1.gz",
        "./usr/share/man/man1/certgate-serve.1.gz",
        "./usr/share/bash-completion/completions/certgate",
        "./usr/share/zsh/vendor-completions/_certgate",
        "./usr/share/fish/vendor_completions.d/certgate.fish",
    ] {
        assert!(
            contents.contains(path),
            "{path} missing from the package:\n{contents}"
        );
    }
    let _installed = Installed;
    run_ok(Command::new(&dpkg).args(["-i", &deb]));
    // The conffile is registered, so an upgrade keeps a user's edits.
    let conffiles = run_ok(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "certgate"]));
    assert!(
        String::from_utf8_lossy(&conffiles.stdout).contains("/etc/certgate/certgate.toml"),
        "the config is not a conffile"
    );
    let check = run_ok(Command::new("/usr/bin/certgate").args([
        "check",
        "--config",
        "/etc/certgate/certgate.toml",
    ]));
    assert!(String::from_utf8_lossy(&check.stdout).contains("OK"));
    run_ok(Command::new("getent").args(["passwd", "certgate"]));
    // systemd-analyze checks the unit's syntax, its executables and its man page references.
    let verify = Command::new(&analyze)
        .args(["verify", "/lib/systemd/system/certgate.service"])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
    run_ok(Command::new(&man).args(["-w", "certgate-ca-issue"]));
}
