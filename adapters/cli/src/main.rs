fn main() {
    hookrun_core::entry::exit(hookrun::main_impl());
}
