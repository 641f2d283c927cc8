fn main() {
    hookrun_core::entry::exit(hookrun_pve_guest::main_impl());
}
