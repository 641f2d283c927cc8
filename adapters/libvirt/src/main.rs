fn main() {
    std::process::exit(hookrun_libvirt::main_impl());
}
