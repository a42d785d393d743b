//! `IncrementalAlterConfigs` through librdkafka's C API.
//!
//! The `rdkafka` crate only wraps the legacy `AlterConfigs`, and its result drops each
//! resource's error (a rejected change reads as success), and legacy `AlterConfigs`
//! replaces every override at once (a read-modify-write race). The incremental API sets
//! and deletes single keys and returns the broker's message, so `topic alter-config` calls
//! it directly. Every native object is owned by a guard that frees it on all paths.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};

/// One change to a topic's configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op<'a> {
    /// Set `key` to `value`.
    Set(&'a str, &'a str),
    /// Remove the override of `key` (back to the default).
    Delete(&'a str),
}

/// Frees a librdkafka object when dropped.
struct Guard<T> {
    ptr: *mut T,
    free: unsafe extern "C" fn(*mut T),
}

impl<T> Drop for Guard<T> {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: `ptr` came from the librdkafka constructor matching `free`, is
            // non-null, and this guard is its only owner, so it is freed exactly once.
            unsafe { (self.free)(self.ptr) }
        }
    }
}

/// A C string from librdkafka (may be null) as an owned `String`.
fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: librdkafka returns NUL-terminated strings that live as long as the object
    // they were read from, which the caller still holds.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn c_string(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"))
}

/// Applies `ops` to `topic` and waits up to `timeout`. `Err` carries the broker's (or
/// librdkafka's) message.
pub fn incremental_alter_topic<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    ops: &[Op<'_>],
    timeout: Duration,
) -> Result<(), String> {
    let rk = client.native_ptr();
    let ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
    let name = c_string(topic)?;

    // SAFETY (all blocks below): `rk` is the live handle owned by `client`, which
    // outlives this function; every pointer passed to librdkafka is either owned by a
    // guard still in scope or a `CString` still in scope; results are read before the
    // event that owns them is destroyed.
    let resource = Guard {
        ptr: unsafe {
            rd::rd_kafka_ConfigResource_new(rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC, name.as_ptr())
        },
        free: rd::rd_kafka_ConfigResource_destroy,
    };
    if resource.ptr.is_null() {
        return Err("librdkafka could not create a config resource".into());
    }
    for op in ops {
        let (key, op_type, value) = match *op {
            Op::Set(k, v) => (k, rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET, Some(v)),
            Op::Delete(k) => (k, rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_DELETE, None),
        };
        let key = c_string(key)?;
        let value = value.map(c_string).transpose()?;
        let value_ptr = value.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
        let error = Guard {
            ptr: unsafe {
                rd::rd_kafka_ConfigResource_add_incremental_config(resource.ptr, key.as_ptr(), op_type, value_ptr)
            },
            free: rd::rd_kafka_error_destroy,
        };
        if !error.ptr.is_null() {
            return Err(text(unsafe { rd::rd_kafka_error_string(error.ptr) }));
        }
    }

    let options = Guard {
        ptr: unsafe {
            rd::rd_kafka_AdminOptions_new(rk, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS)
        },
        free: rd::rd_kafka_AdminOptions_destroy,
    };
    if options.ptr.is_null() {
        return Err("librdkafka could not create admin options".into());
    }
    let mut errstr = [0 as c_char; 256];
    let set =
        unsafe { rd::rd_kafka_AdminOptions_set_request_timeout(options.ptr, ms, errstr.as_mut_ptr(), errstr.len()) };
    if set != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Err(text(errstr.as_ptr()));
    }
    let queue = Guard { ptr: unsafe { rd::rd_kafka_queue_new(rk) }, free: rd::rd_kafka_queue_destroy };
    if queue.ptr.is_null() {
        return Err("librdkafka could not create a queue".into());
    }
    let mut resources = [resource.ptr];
    // librdkafka copies the resources; ours are freed by their guard afterwards.
    unsafe { rd::rd_kafka_IncrementalAlterConfigs(rk, resources.as_mut_ptr(), 1, options.ptr, queue.ptr) };

    // The request itself times out after `ms`; allow a little more for the event.
    let event = Guard {
        ptr: unsafe { rd::rd_kafka_queue_poll(queue.ptr, ms.saturating_add(1000)) },
        free: rd::rd_kafka_event_destroy,
    };
    if event.ptr.is_null() {
        return Err(format!("no answer within {}", humantime::format_duration(timeout)));
    }
    if unsafe { rd::rd_kafka_event_error(event.ptr) } != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Err(text(unsafe { rd::rd_kafka_event_error_string(event.ptr) }));
    }
    let result = unsafe { rd::rd_kafka_event_IncrementalAlterConfigs_result(event.ptr) };
    if result.is_null() {
        return Err("librdkafka answered with an unexpected event".into());
    }
    let mut n = 0usize;
    let results = unsafe { rd::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut n) };
    for i in 0..n {
        let r = unsafe { *results.add(i) };
        if unsafe { rd::rd_kafka_ConfigResource_error(r) } != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            let code = text(unsafe { rd::rd_kafka_err2str(rd::rd_kafka_ConfigResource_error(r)) });
            let detail = text(unsafe { rd::rd_kafka_ConfigResource_error_string(r) });
            return Err(if detail.is_empty() || detail == code { code } else { format!("{code}: {detail}") });
        }
    }
    Ok(())
}
