//! What the headless-Chromium tests share: the check that Node, the npm
//! packages and Chromium are there, and running one script.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

/// The repository's root: the root package's tests and the chat's (in
/// `examples/chat`) share the Node package in `tests/browser` and `docs/`.
fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|dir| dir.join("tests/browser/package.json").is_file())
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Chromium's path, or `None` (after printing `SKIP`) when something the tests
/// need is missing outside CI.
pub fn chromium() -> Option<String> {
    let dir = root().join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = [
        (!node).then_some("node is not installed"),
        (!dir.join("node_modules/playwright-core").is_dir())
            .then_some("tests/browser/node_modules is missing (run `npm ci` in tests/browser)"),
        (!Path::new(&chromium).exists()).then_some("chromium is not installed"),
    ];
    let missing: Vec<_> = missing.into_iter().flatten().collect();
    if !missing.is_empty() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(!ci, "browser test cannot run in CI: {}", missing.join("; "));
        eprintln!("SKIP browser test: {}", missing.join("; "));
        return None;
    }
    Some(chromium)
}

/// Runs `tests/browser/SCRIPT` against `url`; `screenshot` is a file name under
/// `docs/`, written only with `UPDATE_SCREENSHOT`.
pub async fn run(chromium: &str, script: &str, url: String, screenshot: Option<&str>) {
    run_with(chromium, script, url, screenshot, &[]).await
}

/// [`run`], with more environment for the script.
pub async fn run_with(
    chromium: &str,
    script: &str,
    url: String,
    screenshot: Option<&str>,
    env: &[(&str, &str)],
) {
    let dir = root().join("tests/browser");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(script)
        .current_dir(&dir)
        .env("CHAT_URL", url)
        .env("CHROMIUM", chromium)
        .envs(env.iter().copied())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(name) = screenshot.filter(|_| std::env::var_os("UPDATE_SCREENSHOT").is_some()) {
        cmd.arg(root().join("docs").join(name));
    }
    // The script has its own two-minute guard; this one is for node itself.
    let status = tokio::time::timeout(Duration::from_secs(180), cmd.status())
        .await
        .expect("hang guard: node did not finish")
        .expect("node could not be started");
    assert!(status.success(), "{script} failed: {status}");
}
