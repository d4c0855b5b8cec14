//! alba: publish what a Nix flake builds.
//!
//! The thin binary over the `alba` library: arguments, logging, the runtime, exit codes.

/// Sends alba's own `tracing` events to stderr: warnings by default, more with `-v`/`-vv`,
/// or whatever `ALBA_LOG` (an `EnvFilter` directive) says.
fn init_logging(level: i8) {
    let ours = match level {
        i8::MIN..=-1 => "error",
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ALBA_LOG")
        // Only alba's own events: the AWS SDK's warnings (e.g. about probing EC2 metadata for
        // credentials) would bury the one error message that says what to do.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("alba={ours}")));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
}

fn main() {
    let cli = alba::cli::parse();
    init_logging(cli.global.verbose as i8 - cli.global.quiet as i8);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(error) = runtime.block_on(alba::cli::run(cli)) {
        eprintln!("error: {error:#}");
        std::process::exit(alba::error::exit_code(&error));
    }
}
