fn main() {
    hookrun_core::entry::exit(hookrun_worker::main_impl());
}
