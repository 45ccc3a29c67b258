fn main() -> std::process::ExitCode {
    rosewire::cli::main()
}
