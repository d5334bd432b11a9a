//! `template.yaml` as AWS deploys it: `scripts/translate-template` runs the SAM translator of
//! the SAM CLI's venv (`.tools/sam`, installed by `./scripts/install-tools`) and prints plain
//! CloudFormation, which these helpers read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The SAM CLI venv's Python: `INVENTORY_TEST_SAM_PYTHON`, else `.tools/sam/bin/python`.
fn sam_python() -> PathBuf {
    let path = std::env::var_os("INVENTORY_TEST_SAM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/sam/bin/python"));
    assert!(
        path.exists(),
        "{} is missing: run ./scripts/install-tools (the SAM CLI's venv has the SAM translator)",
        path.display()
    );
    path
}

/// What `scripts/translate-template args` prints, kept in the machine's temporary directory
/// under a digest of everything it depends on (the script, the files it reads, the arguments,
/// the Python that runs it): a test runner that starts a process per test (`cargo nextest`)
/// translates each template once, not once per test. A changed template or script is a new
/// digest, so a stale translation is never read.
fn run_script(args: &[&str]) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let python = sam_python();
    let mut digest = DefaultHasher::new();
    python.hash(&mut digest);
    args.hash(&mut digest);
    for input in std::iter::once("scripts/translate-template").chain(args.iter().copied()) {
        std::fs::read(root().join(input))
            .unwrap_or_default()
            .hash(&mut digest);
    }
    let cache = std::env::temp_dir().join("inventory-translated");
    let kept = cache.join(format!("{:016x}.out", digest.finish()));
    if let Ok(text) = std::fs::read_to_string(&kept) {
        return text;
    }
    let text = translate(&python, args);
    // Written whole under a name of this process, then renamed: a reader sees all or nothing.
    let part = cache.join(format!(
        "{:016x}.{}.part",
        digest.finish(),
        std::process::id()
    ));
    if std::fs::create_dir_all(&cache).is_ok() && std::fs::write(&part, &text).is_ok() {
        let _ = std::fs::rename(&part, &kept);
    }
    text
}

fn translate(python: &Path, args: &[&str]) -> String {
    let output = Command::new(python)
        .arg(root().join("scripts/translate-template"))
        .args(args)
        .current_dir(root())
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .expect("the translator runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// The translated template (read once per test process).
pub fn translated() -> &'static Value {
    static TRANSLATED: OnceLock<Value> = OnceLock::new();
    TRANSLATED.get_or_init(|| {
        serde_json::from_str(&run_script(&["template.yaml"])).expect("translated JSON")
    })
}

/// A YAML file of the repository, by its path from the root, as JSON: a template the translator
/// does not take (`deploy/github-oidc.yaml`, whose `Fn::ForEach` stays as written) or a
/// workflow, CloudFormation's short tags (`!Sub`, `!If`, ...) written as the functions they stand
/// for.
pub fn yaml(path: &str) -> Value {
    serde_json::from_str(&run_script(&["--yaml", path]))
        .unwrap_or_else(|err| panic!("{path} as JSON: {err}"))
}

/// IAM's actions, from the reference cfn-lint ships: `service:action` (lower case) → the
/// resource types it accepts (none: it can only be granted on `"*"`).
pub fn iam_actions() -> HashMap<String, Vec<String>> {
    let path = run_script(&["--iam-data"]);
    let text = std::fs::read_to_string(path.trim()).expect("cfn-lint's IAM reference");
    let data: Value = serde_json::from_str(&text).expect("JSON");
    let mut actions = HashMap::new();
    for (service, entry) in data.as_object().expect("services") {
        for (action, detail) in entry["Actions"].as_object().into_iter().flatten() {
            let resources = detail["Resources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect();
            actions.insert(format!("{service}:{action}"), resources);
        }
    }
    actions
}

/// `value` with every `Fn::If` decided by `conditions`.
pub fn decide(value: &Value, conditions: &HashMap<&str, bool>) -> Value {
    match value {
        Value::Object(map) if map.len() == 1 && map.contains_key("Fn::If") => {
            let branches = &map["Fn::If"];
            let name = branches[0].as_str().expect("condition name");
            let holds = *conditions
                .get(name)
                .unwrap_or_else(|| panic!("condition {name} not decided"));
            decide(&branches[if holds { 1 } else { 2 }], conditions)
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), decide(v, conditions)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| decide(v, conditions)).collect()),
        other => other.clone(),
    }
}

/// The resources of one CloudFormation type, with their logical ids.
pub fn resources_of<'a>(template: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    template["Resources"]
        .as_object()
        .expect("resources")
        .iter()
        .filter(|(_, resource)| resource["Type"] == kind)
        .collect()
}

/// A value IAM and CloudFormation accept as one item or a list, as a list.
pub fn list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        one => vec![one.clone()],
    }
}

/// Every statement of the inline policies of the role `role`.
pub fn statements(template: &Value, role: &str) -> Vec<Value> {
    let resource = &template["Resources"][role];
    assert!(
        !resource["Properties"]["Policies"].is_null(),
        "the template has no role {role}"
    );
    inline_statements(resource)
}

/// Every statement of the inline policies of a role resource.
pub fn inline_statements(role: &Value) -> Vec<Value> {
    list(&role["Properties"]["Policies"])
        .iter()
        .flat_map(|policy| list(&policy["PolicyDocument"]["Statement"]))
        .collect()
}
