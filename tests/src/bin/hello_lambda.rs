//! `hello-lambda`: the smallest `lambda_runtime` function, echoing its event. `make bench`
//! starts it under the same Runtime API harness as the four functions, in the same run, as
//! the floor their cold starts are reported against (`cold_init_ratio_<function>` in
//! target/bench/api.json).

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
