//! Runs a broker inside another program: `cargo run -p strom-broker --example embedded --
//! 127.0.0.1:0 /tmp/strom-data`. Prints the bound address, serves until Ctrl-C.

use strom_broker::{Broker, Config};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let config = Config {
        listen: args.next().unwrap_or_else(|| "127.0.0.1:0".into()),
        data_dir: args.next().unwrap_or_else(|| "./strom-data".into()).into(),
        ..Config::default()
    };
    let shutdown = CancellationToken::new();
    let broker = Broker::bind(config, shutdown.clone()).await?;
    println!("{}", broker.local_addr());
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    broker.run().await?;
    Ok(())
}
