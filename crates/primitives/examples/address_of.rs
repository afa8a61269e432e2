//! Prints the public key and address of a secret key given as hex, for a chain prefix.
//! `cargo run -p cairn-primitives --example address_of -- <secret hex> <prefix>`

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: address_of <32-byte secret key hex> <address prefix>");
        std::process::exit(2);
    }
    let bytes: [u8; 32] = match hex::decode(&args[1]).ok().and_then(|b| b.try_into().ok()) {
        Some(b) => b,
        None => {
            eprintln!("error: the secret key must be 64 hex characters");
            std::process::exit(2);
        }
    };
    let key = match cairn_primitives::SecretKey::from_bytes(bytes) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    match cairn_primitives::Address::new(key.public_key()).encode(&args[2]) {
        Ok(a) => println!("pubkey {}\naddress {a}", key.public_key().to_hex()),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
