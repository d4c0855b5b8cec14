use super::*;

pub fn job(doc: &Value, event: &Event, secrets: &Secrets) -> Job {
    assert!(
        matches(&doc["when"], event),
        "the workflow's `when` does not start it for {event:?}"
    );
    let mut job = Job {
        steps: Vec::new(),
        always: Vec::new(),
    };
    let steps = doc["steps"].as_sequence().expect("`steps` is a list");
    for step in steps {
        let when = &step["when"];
        if after_failure(when) {
            job.always.push(shell_step(step, secrets));
        } else if matches(when, event) {
            job.steps.push(shell_step(step, secrets));
        }
    }
    job
}

/// The event name and ref Woodpecker gives `event`.
fn event_of(event: &Event) -> (&'static str, String) {
    match event {
        Event::Tag(tag) => ("tag", format!("refs/tags/{tag}")),
        Event::Manual { .. } => ("manual", "refs/heads/main".into()),
    }
}

/// True if one of the `when` conditions holds (no `when`: always).
fn matches(when: &Value, event: &Event) -> bool {
    let (name, git_ref) = event_of(event);
    let conditions = match when {
        Value::Null => return true,
        Value::Sequence(items) => items.clone(),
        other => vec![other.clone()],
    };
    conditions.iter().any(|c| {
        let events = strings(&c["event"]);
        let event_ok = events.is_empty() || events.iter().any(|e| e == name);
        let ref_ok = c["ref"].is_null() || glob(string(&c["ref"], "`ref`"), &git_ref);
        event_ok && ref_ok && c["status"].is_null()
    })
}

/// True for a step that also runs after a failed one (`status: [success, failure]`).
fn after_failure(when: &Value) -> bool {
    let conditions = when.as_sequence().cloned().unwrap_or_default();
    conditions
        .iter()
        .any(|c| strings(&c["status"]).iter().any(|s| s == "failure"))
}

/// Woodpecker's ref patterns, as far as these files use them (a trailing `*`).
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => {
            assert!(!prefix.contains('*'), "unsupported pattern {pattern}");
            text.starts_with(prefix)
        }
        None => pattern == text,
    }
}

fn shell_step(step: &Value, secrets: &Secrets) -> Step {
    let name = string(&step["name"], "a step's name").to_string();
    let mut script = String::new();
    for command in step["commands"]
        .as_sequence()
        .expect("`commands` is a list")
    {
        let command = unescape(string(command, "a command"), &name);
        // What Woodpecker's generated script does: echo each command, then run it.
        script.push_str(&format!("printf '+ %s\\n' {}\n", shell_quote(&command)));
        script.push_str(&command);
        script.push('\n');
    }
    let env = match step["environment"].as_mapping() {
        Some(map) => entries(map)
            .map(|(k, v)| (k.into(), value(v, secrets)))
            .collect(),
        None => Vec::new(),
    };
    Step {
        name,
        // Woodpecker runs the commands with the image's `/bin/sh -e` (bash in nixos/nix).
        shell: vec!["bash", "-e"],
        script,
        env,
    }
}

/// An `environment` value: a string, or `from_secret: name`.
fn value(value: &Value, secrets: &Secrets) -> String {
    match value {
        Value::Mapping(_) => secrets.get(string(&value["from_secret"], "`from_secret`")),
        other => string(other, "an environment value").into(),
    }
}

/// Undoes Woodpecker's pre-processing: `$${NAME}` reaches the shell as `${NAME}`. Any
/// other `$` would be substituted by Woodpecker itself first, so none is allowed.
fn unescape(command: &str, step: &str) -> String {
    let parts: Vec<&str> = command.split("$${").collect();
    for part in &parts {
        assert!(
            !part.contains('$'),
            "step {step}: a `$` not written `$${{` would be rewritten by Woodpecker: {command}"
        );
    }
    parts.join("${")
}
