//! Shared by the SoftHSM integration tests: each test re-runs itself in a child process with
//! its own token directory, because SOFTHSM2_CONF is read once per process at C_Initialize and
//! setting it in-process would need `unsafe` (forbidden here).

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a test file's child processes get.
pub struct ChildSpec<'a> {
    /// Environment variable that tells the child where its token directory is.
    pub child_dir_var: &'a str,
    /// A PIN variable removed from the child's environment, so "unset PIN" tests are real.
    pub unset_pin_var: &'a str,
    pub pin: &'a str,
    pub so_pin: &'a str,
    /// Token labels to initialise.
    pub labels: &'a [&'a str],
}

/// In the child: returns its token directory. In the parent: makes a token directory
/// (SoftHSM conf, `user.pin`, the tokens, whatever `prepare` adds), runs test `name` in a
/// child process on it, asserts the child passed exactly that test, and returns `None`.
pub fn dir_or_run_child(name: &str, spec: &ChildSpec<'_>, prepare: impl FnOnce(&Path)) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(spec.child_dir_var) {
        return Some(PathBuf::from(dir));
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    std::fs::create_dir(dir.join("tokens")).expect("token dir");
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.join("tokens").display()
        ),
    )
    .expect("conf");
    std::fs::write(dir.join("user.pin"), format!("{}\n", spec.pin)).expect("pin file");
    prepare(dir);
    for label in spec.labels {
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", label, "--so-pin", spec.so_pin, "--pin", spec.pin])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .expect("softhsm2-util runs");
        assert!(out.status.success(), "init-token {label}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("SOFTHSM2_CONF", &conf)
        .env(spec.child_dir_var, dir)
        .env_remove(spec.unset_pin_var)
        .output()
        .expect("child test runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child test {name} failed:\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    None
}
