//! A runner of one CI job: the job's steps run with that CI's shell and environment.

use super::*;

/// What one job did.
pub(super) struct JobRun {
    /// Every step's output, in order (`always` steps last).
    pub(super) outputs: Vec<(String, Output)>,
    /// True if every step of `steps` succeeded.
    pub(super) ok: bool,
}

impl JobRun {
    /// The whole log: each step's stdout and stderr.
    pub(super) fn log(&self) -> String {
        let mut log = String::new();
        for (name, out) in &self.outputs {
            log.push_str(&format!(
                "=== step {name} ({})\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        log
    }
}

/// A fresh runner for one job: its own HOME, alba cache and script folder.
pub(super) struct Runner {
    pub(super) checkout: PathBuf,
    pub(super) scratch: tempfile::TempDir,
    pub(super) ci: Ci,
    pub(super) nix: NixVersion,
}

impl Runner {
    pub(super) fn run(&self, job: &Job, event: &Event) -> JobRun {
        let mut run = JobRun {
            outputs: Vec::new(),
            ok: true,
        };
        for step in &job.steps {
            let out = self.step(step, event);
            run.ok = out.status.success();
            run.outputs.push((step.name.clone(), out));
            if !run.ok {
                break;
            }
        }
        for step in &job.always {
            let out = self.step(step, event);
            run.outputs.push((step.name.clone(), out));
        }
        run
    }

    /// Runs one step's script with the CI's shell, in the checkout, bounded in time.
    fn step(&self, step: &Step, event: &Event) -> Output {
        let script = self.scratch.path().join(format!("{}.sh", step.name));
        std::fs::write(&script, &step.script).expect("could not write the step's script");
        let mut command = self.fresh_command("timeout");
        command
            .arg(STEP_TIMEOUT_SECS)
            .args(&step.shell)
            .arg(&script)
            .current_dir(&self.checkout)
            .envs(self.base_env())
            .envs(self.ci.predefined(event))
            .envs(step.env.iter().cloned());
        let job_nix = step
            .env
            .iter()
            .find(|(k, _)| k == "NIX_CONFIG")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        command.env(
            "NIX_CONFIG",
            format!("{job_nix}\n{}", common::nix::NIX_CONFIG),
        );
        command
            .stdin(std::process::Stdio::null())
            .output()
            .expect("could not run bash")
    }

    /// `program` where this Nix is (the host, or the chroot), with an empty environment but
    /// for what the chroot's wrapper itself needs.
    fn fresh_command(&self, program: &str) -> Command {
        let mut command = self.nix.command(program);
        let wrapper: Vec<(std::ffi::OsString, std::ffi::OsString)> = command
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
            .collect();
        command.env_clear().envs(wrapper);
        command
    }

    /// What every runner has: PATH, a HOME of its own, no AWS or Docker settings of the host.
    fn base_env(&self) -> Vec<(String, String)> {
        let home = self.scratch.path().join("home");
        let cache = self.scratch.path().join("cache");
        for dir in [&home, &cache] {
            std::fs::create_dir_all(dir).expect("could not create the runner's folders");
        }
        let mut env = common::isolation_env(self.scratch.path());
        if self.nix == NixVersion::Host {
            // The chroot's wrapper sets the PATH of the inside.
            env.push(("PATH".into(), std::env::var("PATH").unwrap_or_default()));
        }
        env.push(("HOME".into(), home.display().to_string()));
        env.push(("XDG_CACHE_HOME".into(), cache.display().to_string()));
        env
    }
}
