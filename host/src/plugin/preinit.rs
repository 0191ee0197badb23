//! Pre-initialisation: run a plugin's `init` once at load, with this deployment's config, and keep a
//! snapshot of the initialised instance (its linear memories and globals) as a new component. Every
//! per-call instance then starts from that image, copy-on-write, instead of parsing its config again
//! on each call: `init` was most of the per-call cost of a fresh instance.
//!
//! The snapshot is wasmtime's own Wizer. It cannot capture host-side state, so a plugin whose `init`
//! leaves resource handles behind (an open stream, say) would start every call with dangling
//! handles; such plugins set `pre-init = false`, and a component Wizer cannot rewrite falls back to
//! running `init` per call.

use wasmtime::Store;
use wasmtime::component::{Instance, Lift, WasmList};
use wasmtime_wizer::{ComponentInstanceState, Wizer};

use super::ctx::PluginCtx;

/// Reads a pre-initialisation instance's state through the accessor functions Wizer's instrumenting
/// pass exports.
struct Access<'a> {
    store: &'a mut Store<PluginCtx>,
    instance: Instance,
}

impl Access<'_> {
    async fn call<R: Lift + Send + Sync + 'static>(&mut self, instance: &str, func: &str) -> R {
        // The instrumenting pass created these exports itself: their absence is a Wizer bug, and
        // Wizer's trait gives no way to report one but a panic, which `load` contains.
        let (_, group) = self
            .instance
            .get_export(&mut *self.store, None, instance)
            .expect("wizer accessor instance");
        let (_, export) = self
            .instance
            .get_export(&mut *self.store, Some(&group), func)
            .expect("wizer accessor function");
        let func = self
            .instance
            .get_typed_func::<(), (R,)>(&mut *self.store, export)
            .expect("wizer accessor type");
        let (ret,) = func
            .call_async(&mut *self.store, ())
            .await
            .expect("wizer accessor call");
        ret
    }
}

impl ComponentInstanceState for Access<'_> {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        let list: WasmList<u8> = self.call(instance, func).await;
        contents(list.as_le_slice(&*self.store));
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call(instance, func).await
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call(instance, func).await
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call::<f32>(instance, func).await.to_bits()
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call::<f64>(instance, func).await.to_bits()
    }
}

/// The instrumented form of a component: the same code plus exports through which its state can be
/// read after `init`. Fails for component shapes Wizer does not support.
pub(crate) fn instrument(bytes: &[u8]) -> wasmtime::Result<Vec<u8>> {
    Ok(Wizer::new().instrument_component(bytes)?.1)
}

/// Snapshots `instance` (of the instrumented form of `bytes`, after `init` ran in `store`) into a
/// component whose instances start in that state.
pub(crate) async fn snapshot(
    bytes: &[u8],
    store: &mut Store<PluginCtx>,
    instance: Instance,
) -> wasmtime::Result<Vec<u8>> {
    let wizer = Wizer::new();
    // Parsing again is cheap and keeps the borrowed context out of the caller's awaits.
    let (cx, _) = wizer.instrument_component(bytes)?;
    let mut access = Access { store, instance };
    wizer.snapshot_component(&cx, &mut access).await
}
