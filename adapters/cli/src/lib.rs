pub fn main_impl() -> i32 { 0 }
