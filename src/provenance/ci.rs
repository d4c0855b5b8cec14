//! Who ran the build (`runDetails.builder.id`) and which run it was
//! (`runDetails.metadata.invocationId`), from the CI's own variables:
//!
//! | CI (recognised by) | builder.id | invocationId |
//! |---|---|---|
//! | Forgejo / GitHub Actions (`GITHUB_ACTIONS=true`) | `$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions` | `$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID/attempts/$GITHUB_RUN_ATTEMPT` |
//! | GitLab CI (`GITLAB_CI=true`) | `$CI_SERVER_URL/$CI_PROJECT_PATH/-/runners/$CI_RUNNER_ID` | `$CI_JOB_URL` |
//! | Woodpecker (`CI=woodpecker`) | `$CI_SYSTEM_URL/repos/$CI_REPO` | `$CI_PIPELINE_URL` (else `$CI_SYSTEM_URL/repos/$CI_REPO/pipeline/$CI_PIPELINE_NUMBER`) |
//! | none | `urn:alba:local` | none |
//!
//! `ALBA_BUILDER_ID` and `ALBA_INVOCATION_ID` override both (any CI, or none).

/// The builder and invocation ids of this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDetails {
    /// `runDetails.builder.id`.
    pub builder_id: String,
    /// `runDetails.metadata.invocationId`, when known.
    pub invocation_id: Option<String>,
}

/// The builder id of a run outside any recognised CI.
pub const LOCAL_BUILDER: &str = "urn:alba:local";

/// The run details from the process environment.
pub fn from_env() -> RunDetails {
    detect(&|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

/// The run details from the variables `var` gives.
pub fn detect(var: &dyn Fn(&str) -> Option<String>) -> RunDetails {
    let detected = actions(var)
        .or_else(|| gitlab(var))
        .or_else(|| woodpecker(var));
    let (builder, invocation) = detected.unwrap_or((LOCAL_BUILDER.to_string(), None));
    RunDetails {
        builder_id: var("ALBA_BUILDER_ID").unwrap_or(builder),
        invocation_id: var("ALBA_INVOCATION_ID").or(invocation),
    }
}

type Ids = Option<(String, Option<String>)>;

fn actions(var: &dyn Fn(&str) -> Option<String>) -> Ids {
    if var("GITHUB_ACTIONS").as_deref() != Some("true") {
        return None;
    }
    let server = var("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into());
    let repo = format!("{server}/{}", var("GITHUB_REPOSITORY")?);
    let run = var("GITHUB_RUN_ID").map(|id| {
        let attempt = var("GITHUB_RUN_ATTEMPT").unwrap_or_else(|| "1".into());
        format!("{repo}/actions/runs/{id}/attempts/{attempt}")
    });
    Some((format!("{repo}/actions"), run))
}

fn gitlab(var: &dyn Fn(&str) -> Option<String>) -> Ids {
    if var("GITLAB_CI").as_deref() != Some("true") {
        return None;
    }
    let project = format!("{}/{}", var("CI_SERVER_URL")?, var("CI_PROJECT_PATH")?);
    let builder = match var("CI_RUNNER_ID") {
        Some(runner) => format!("{project}/-/runners/{runner}"),
        None => format!("{project}/-/runners"),
    };
    Some((builder, var("CI_JOB_URL")))
}

fn woodpecker(var: &dyn Fn(&str) -> Option<String>) -> Ids {
    if var("CI").as_deref() != Some("woodpecker") {
        return None;
    }
    let repo = format!("{}/repos/{}", var("CI_SYSTEM_URL")?, var("CI_REPO")?);
    let pipeline = var("CI_PIPELINE_URL")
        .or_else(|| var("CI_PIPELINE_NUMBER").map(|n| format!("{repo}/pipeline/{n}")));
    Some((repo, pipeline))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> RunDetails {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        detect(&|name| map.get(name).cloned())
    }

    #[test]
    fn each_ci_and_the_overrides() {
        let actions = with(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_SERVER_URL", "https://code.example.org"),
            ("GITHUB_REPOSITORY", "team/albatros"),
            ("GITHUB_RUN_ID", "42"),
            ("GITHUB_RUN_ATTEMPT", "2"),
        ]);
        assert_eq!(
            actions.builder_id,
            "https://code.example.org/team/albatros/actions"
        );
        assert_eq!(
            actions.invocation_id.as_deref(),
            Some("https://code.example.org/team/albatros/actions/runs/42/attempts/2")
        );
        let gitlab = with(&[
            ("GITLAB_CI", "true"),
            ("CI", "true"),
            ("CI_SERVER_URL", "https://gitlab.example.org"),
            ("CI_PROJECT_PATH", "team/albatros"),
            ("CI_RUNNER_ID", "7"),
            (
                "CI_JOB_URL",
                "https://gitlab.example.org/team/albatros/-/jobs/9",
            ),
        ]);
        assert_eq!(
            gitlab.builder_id,
            "https://gitlab.example.org/team/albatros/-/runners/7"
        );
        assert_eq!(
            gitlab.invocation_id.as_deref(),
            Some("https://gitlab.example.org/team/albatros/-/jobs/9")
        );
        let woodpecker = with(&[
            ("CI", "woodpecker"),
            ("CI_SYSTEM_URL", "https://ci.example.org"),
            ("CI_REPO", "team/albatros"),
            ("CI_PIPELINE_NUMBER", "5"),
        ]);
        assert_eq!(
            woodpecker.builder_id,
            "https://ci.example.org/repos/team/albatros"
        );
        assert_eq!(
            woodpecker.invocation_id.as_deref(),
            Some("https://ci.example.org/repos/team/albatros/pipeline/5")
        );
        assert_eq!(with(&[]).builder_id, LOCAL_BUILDER);
        assert_eq!(with(&[]).invocation_id, None);
        let overridden = with(&[
            ("CI", "woodpecker"),
            ("CI_SYSTEM_URL", "https://ci.example.org"),
            ("CI_REPO", "team/albatros"),
            ("ALBA_BUILDER_ID", "https://builders.example.org/b1"),
            ("ALBA_INVOCATION_ID", "run-1"),
        ]);
        assert_eq!(overridden.builder_id, "https://builders.example.org/b1");
        assert_eq!(overridden.invocation_id.as_deref(), Some("run-1"));
    }
}
