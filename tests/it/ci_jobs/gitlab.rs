use super::*;

/// Top-level keys that are not jobs.
const KEYWORDS: [&str; 6] = [
    "stages",
    "variables",
    "default",
    "include",
    "workflow",
    "image",
];

pub fn job(doc: &Value, event: &Event, secrets: &Secrets) -> Job {
    let top = mapping(doc, "the file");
    let predefined: BTreeMap<String, String> = Ci::GitLab.predefined(event).into_iter().collect();
    let mut started = Vec::new();
    for (name, job) in entries(top) {
        if name.starts_with('.') || KEYWORDS.contains(&name) {
            continue;
        }
        let job = resolve(top, job);
        match rules(&job, &predefined) {
            None => {}
            Some(when) => started.push((name, job, when)),
        }
    }
    assert_eq!(
        started.len(),
        1,
        "one job for {event:?}: {:?}",
        started.len()
    );
    let (name, job, when) = started.remove(0);
    let expected_when = match event {
        Event::Tag(_) => "on_success",
        Event::Manual { .. } => "manual",
    };
    assert_eq!(
        when, expected_when,
        "{name} starts {expected_when} for {event:?}"
    );
    check_artifacts(name, &job);
    Job {
        steps: vec![shell_step(name, &job, event, secrets)],
        always: Vec::new(),
    }
}

/// The job with its `extends` merged in (hashes deep-merged, the job's own keys win).
fn resolve(top: &Mapping, job: &Value) -> Value {
    let mut merged = Value::Mapping(Mapping::new());
    for parent in strings(&job["extends"]) {
        let parent = top
            .get(parent.as_str())
            .unwrap_or_else(|| panic!("extends an unknown job {parent}"));
        merge(&mut merged, &resolve(top, parent));
    }
    merge(&mut merged, job);
    merged
}

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Mapping(into), Value::Mapping(from)) => {
            for (k, v) in from {
                match into.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        into.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (into, from) => *into = from.clone(),
    }
}

/// The `when` of the first rule whose `if` holds, or `None` (the job is not added).
fn rules(job: &Value, vars: &BTreeMap<String, String>) -> Option<String> {
    let rules = job["rules"].as_sequence().expect("every job has `rules`");
    let rule = rules
        .iter()
        .find(|r| condition(string(&r["if"], "a rule's `if`"), vars))?;
    let when = rule["when"].as_str().unwrap_or("on_success").to_string();
    (when != "never").then_some(when)
}

/// `$VAR` (set and not empty) or `$VAR =~ /^prefix/`, the forms these files use.
fn condition(expression: &str, vars: &BTreeMap<String, String>) -> bool {
    let (variable, pattern) = match expression.split_once(" =~ ") {
        Some((v, p)) => (v, Some(p)),
        None => (expression, None),
    };
    let name = variable.strip_prefix('$').expect("a rule starts with $VAR");
    let value = vars.get(name).map(String::as_str).unwrap_or_default();
    match pattern {
        None => !value.is_empty(),
        Some(pattern) => {
            let prefix = pattern
                .strip_prefix("/^")
                .and_then(|p| p.strip_suffix('/'))
                .filter(|p| p.chars().all(|c| c.is_ascii_alphanumeric()))
                .unwrap_or_else(|| panic!("unsupported pattern {pattern}"));
            value.starts_with(prefix)
        }
    }
}

/// `artifacts: when: always, paths: [alba-report.json]`.
fn check_artifacts(name: &str, job: &Value) {
    let artifacts = &job["artifacts"];
    assert_eq!(
        artifacts["when"].as_str(),
        Some("always"),
        "{name}: kept on failure"
    );
    assert!(
        strings(&artifacts["paths"]).iter().any(|p| p == REPORT),
        "{name}: keeps {REPORT}"
    );
    assert!(
        string(&job["image"], "`image`").starts_with("nixos/nix"),
        "{name}: runs in a Nix image"
    );
}

fn shell_step(name: &str, job: &Value, event: &Event, secrets: &Secrets) -> Step {
    let mut script = String::from("set -eo pipefail\n");
    for key in ["before_script", "script"] {
        for line in strings(&job[key]) {
            script.push_str(&line);
            script.push('\n');
        }
    }
    let mut env: Vec<(String, String)> = secrets.0.clone().into_iter().collect();
    if let Some(vars) = job["variables"].as_mapping() {
        for (k, v) in entries(vars) {
            env.push((k.into(), string(v, "a variable").into()));
        }
    }
    if let Event::Manual { version } = event {
        // Variables given when starting a manual job override the job's own.
        env.push(("VERSION".into(), version.clone()));
    }
    Step {
        name: name.to_string(),
        shell: vec!["bash"],
        script,
        env,
    }
}
