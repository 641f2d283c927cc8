fn main() {
    std::process::exit(hookrun_worker::main_impl());
}
