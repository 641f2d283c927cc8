fn main() {
    std::process::exit(hookrun_pve_guest::main_impl());
}
