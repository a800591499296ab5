//! The binary against real files: the reference config.toml is accepted; a broken file gets
//! every error with its key path and exit code 2.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ilp-connector"))
}

fn reference_config() -> String {
    format!("{}/../config.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn reference_config_is_accepted() {
    let out = bin()
        .args(["check-config", "--config", &reference_config()])
        .output()
        .expect("binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("test.ilp-connector"), "{printed}");
    let out = bin()
        .args(["--config", &reference_config()])
        .output()
        .expect("binary runs");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("account alice"));
}

#[test]
fn broken_config_lists_every_error_and_exits_2() {
    let dir = std::env::temp_dir().join(format!("ilp-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("broken.toml");
    std::fs::write(
        &path,
        "[node]\nilp_address = \"bad address\"\nasset_scale = 300\nbogus_key = 1\n",
    )
    .expect("write config");
    let out = bin()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("binary runs");
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in ["node.ilp_address", "node.asset_scale", "node.bogus_key"] {
        assert!(stderr.contains(key), "missing {key} in:\n{stderr}");
    }
}

#[test]
fn missing_file_and_bad_arguments_exit_2() {
    let out = bin()
        .args(["--config", "/nonexistent/ilp.toml"])
        .output()
        .expect("binary runs");
    assert_eq!(out.status.code(), Some(2));
    let out = bin().arg("--frobnicate").output().expect("binary runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
}
