//! The `recoverbot` binary: everything happens in [`recoverbot::cli`].

fn main() -> std::process::ExitCode {
    recoverbot::cli::main()
}
