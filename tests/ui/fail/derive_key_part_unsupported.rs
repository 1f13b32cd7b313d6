use cache_runtime::KeyPart;

#[derive(KeyPart)]
struct Nothing;

#[derive(KeyPart)]
enum Shape {
    Circle,
    Square(u32),
    Rect { w: u32, h: u32 },
}

#[derive(KeyPart)]
struct Wrapper(f32);

fn main() {}
