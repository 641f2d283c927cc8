fn main() {
    std::process::exit(hookrun_vzdump::main_impl());
}
