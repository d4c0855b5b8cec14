use super::*;

pub fn job(doc: &Value, event: &Event, secrets: &Secrets) -> Job {
    check_triggers(doc);
    let jobs = mapping(&doc["jobs"], "`jobs`");
    let started: Vec<(&str, &Value)> = entries(jobs)
        .filter(|(_, job)| condition(string(&job["if"], "a job's `if`"), event))
        .collect();
    assert_eq!(started.len(), 1, "one job runs for {event:?}");
    let (name, job) = started[0];
    let steps = job["steps"].as_sequence().expect("`steps` is a list");
    check_actions(name, steps);
    let steps = steps
        .iter()
        .filter(|s| !s["run"].is_null())
        .map(|s| shell_step(s, event, secrets))
        .collect();
    Job {
        steps,
        always: Vec::new(),
    }
}

/// `on: push: tags: ["v*"]` and `workflow_dispatch` with a `version` input.
fn check_triggers(doc: &Value) {
    let on = &doc["on"];
    assert_eq!(strings(&on["push"]["tags"]), ["v*"], "runs on v* tags");
    assert!(
        !on["workflow_dispatch"]["inputs"]["version"].is_null(),
        "a manual run asks for the version"
    );
}

/// Checkout and Nix come before the shell step; the report is kept even on failure.
fn check_actions(job: &str, steps: &[Value]) {
    let uses: Vec<&str> = steps.iter().filter_map(|s| s["uses"].as_str()).collect();
    let has = |prefix: &str| uses.iter().any(|u| u.starts_with(prefix));
    assert!(has("actions/checkout@"), "{job}: checks the repository out");
    assert!(has("cachix/install-nix-action@"), "{job}: installs Nix");
    let upload = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact@"))
        })
        .unwrap_or_else(|| panic!("{job}: keeps the report as an artifact"));
    assert_eq!(
        upload["if"].as_str(),
        Some("always()"),
        "{job}: also after a failure"
    );
    assert_eq!(
        upload["with"]["path"].as_str(),
        Some(REPORT),
        "{job}: the report file"
    );
}

/// `github.event_name == 'NAME'`, the only form these files use.
fn condition(expression: &str, event: &Event) -> bool {
    let name = expression
        .strip_prefix("github.event_name == '")
        .and_then(|rest| rest.strip_suffix('\''))
        .unwrap_or_else(|| panic!("unsupported `if`: {expression}"));
    let actual = match event {
        Event::Tag(_) => "push",
        Event::Manual { .. } => "workflow_dispatch",
    };
    name == actual
}

fn shell_step(step: &Value, event: &Event, secrets: &Secrets) -> Step {
    let name = string(&step["name"], "a run step's name").to_string();
    let script = string(&step["run"], "`run`").to_string();
    assert!(
        !script.contains("${{"),
        "{name}: expressions go through `env`, not into the script"
    );
    assert_eq!(
        step["shell"].as_str(),
        Some("bash"),
        "{name}: runs with bash"
    );
    let env = match step["env"].as_mapping() {
        Some(map) => entries(map)
            .map(|(k, v)| {
                (
                    k.into(),
                    expression(string(v, "an env value"), event, secrets),
                )
            })
            .collect(),
        None => Vec::new(),
    };
    Step {
        name,
        // What `shell: bash` means on GitHub and Forgejo runners.
        shell: vec!["bash", "--noprofile", "--norc", "-eo", "pipefail"],
        script,
        env,
    }
}

/// `${{ secrets.X }}` or `${{ inputs.X }}`; plain strings stay as they are.
fn expression(value: &str, event: &Event, secrets: &Secrets) -> String {
    let Some(inner) = value
        .strip_prefix("${{")
        .and_then(|rest| rest.strip_suffix("}}"))
    else {
        assert!(!value.contains("${{"), "unsupported env value {value}");
        return value.to_string();
    };
    let inner = inner.trim();
    if let Some(name) = inner.strip_prefix("secrets.") {
        return secrets.get(name);
    }
    match (inner, event) {
        ("inputs.version", Event::Manual { version }) => version.clone(),
        _ => panic!("unsupported expression {value} for {event:?}"),
    }
}
