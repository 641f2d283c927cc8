fn main() {
    hookrun_core::entry::exit(hookrun_vzdump::main_impl());
}
