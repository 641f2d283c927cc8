fn main() {
    std::process::exit(hookrun::main_impl());
}
