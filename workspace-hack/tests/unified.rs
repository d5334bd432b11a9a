//! `sam build` builds each Lambda function on its own, and a dependency is compiled once per
//! feature set those builds resolve it with. These tests hold every function's build (for the
//! deployed target) to one feature set for each dependency they share, so the AWS SDK chain is
//! compiled once, not once more for the one function that turns on a feature of it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// The functions `template.yaml` builds.
const FUNCTIONS: [&str; 5] = [
    "reservations-api",
    "command-processor",
    "snapshotter",
    "archiver",
    "expiry-timer",
];

/// The target the template deploys to (`Architectures: [arm64]`).
const TARGET: &str = "aarch64-unknown-linux-gnu";

/// Each package `function`'s release build compiles (normal and build dependencies), with the
/// features it turns on: `cargo tree`'s own resolution.
fn resolved(function: &str) -> BTreeMap<String, String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds this crate");
    let output = Command::new(env!("CARGO"))
        .current_dir(workspace)
        .args(["tree", "--locked", "-p", function, "--target", TARGET])
        .args([
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}|{f}",
        ])
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree -p {function}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("cargo tree prints UTF-8")
        .lines()
        .filter_map(|line| {
            let (package, features) = line.trim_end_matches(" (*)").split_once('|')?;
            Some((package.to_owned(), features.to_owned()))
        })
        .collect()
}

#[test]
fn every_function_builds_each_shared_dependency_with_the_same_features() {
    let builds: Vec<(&str, BTreeMap<String, String>)> =
        FUNCTIONS.iter().map(|f| (*f, resolved(f))).collect();
    let (first, reference) = &builds[0];
    assert!(
        reference
            .keys()
            .any(|package| package.starts_with("aws-sdk-dynamodb ")),
        "{first} builds the SDK: {reference:#?}"
    );
    let mut drift = Vec::new();
    for (function, build) in &builds[1..] {
        for (package, features) in build {
            match reference.get(package) {
                Some(theirs) if theirs != features => drift.push(format!(
                    "{package}: {first} [{theirs}], {function} [{features}]"
                )),
                _ => {}
            }
        }
    }
    assert!(
        drift.is_empty(),
        "turn these features on in workspace-hack/Cargo.toml, for every function:\n{}",
        drift.join("\n")
    );
}

#[test]
fn every_function_depends_on_the_workspace_hack() {
    for function in FUNCTIONS {
        assert!(
            resolved(function)
                .keys()
                .any(|package| package.starts_with("workspace-hack ")),
            "{function} does not depend on workspace-hack"
        );
    }
}
