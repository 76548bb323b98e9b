//! The wgpu backend: adapter selection, the kernel registry, a pipeline cache, a buffer pool and a
//! command recorder that batches many dispatches into few queue submissions.
//!
//! Ordering model: every upload, dispatch and download is recorded into one command encoder in
//! program order, so a pooled buffer released by one op and reused by the next is always safe
//! (the GPU executes the encoder in order, with wgpu inserting the barriers).
use super::kernel_params::KernelParams;
use anyhow::{Context, Result, anyhow, bail};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// A pipeline: its file, entry point and pipeline-overridable constants (name, value bits).
type PipelineKey = (&'static str, &'static str, Vec<(&'static str, u64)>);

/// Dispatches recorded before the encoder is submitted, so the device starts early on long passes.
const DISPATCHES_PER_SUBMIT: usize = 48;

pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    /// (kernel file, Rust params type) pairs whose uniform structs have been checked to agree.
    checked_params: Mutex<std::collections::HashSet<(&'static str, &'static str)>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<(wgpu::ComputePipeline, usize)>>>,
    layouts: Mutex<HashMap<usize, (wgpu::BindGroupLayout, wgpu::PipelineLayout)>>,
    pool: Mutex<Pool>,
    recorder: Mutex<Recorder>,
    error: Arc<Mutex<Option<String>>>,
    /// The conv register tile chosen for this adapter (see `ops::conv2d::gpu_tile`).
    pub conv_tile: std::sync::OnceLock<(usize, usize)>,
    /// The driver's pipeline cache, loaded from and saved to disk (Vulkan).
    pipeline_cache: Option<PipelineDiskCache>,
    /// The adapter can unpack f16 values in shaders (`unpack2x16float`; wgpu's
    /// `SHADER_F16_IN_F32` downlevel flag): f16 weight storage needs it.
    pub f16_in_f32: bool,
}

/// The device format of conv and linear weights. Compute is f32 either way: f16 weights are
/// unpacked to f32 on load (`unpack2x16float`), so they need no adapter feature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightStorage {
    /// Exact: weights as given.
    #[default]
    F32,
    /// Half the device memory and weight bandwidth; each weight rounded to the nearest f16.
    F16,
}

/// A wgpu pipeline cache and the file it persists to (`<cache dir>/<pipeline_cache_key>.bin`:
/// an FNV-1a checksum of the data, then the data).
struct PipelineDiskCache {
    cache: wgpu::PipelineCache,
    path: std::path::PathBuf,
    /// Pipelines were compiled since the last save.
    dirty: std::sync::atomic::AtomicBool,
}

/// The cached pipeline data in `path`, if it is there and its checksum holds.
fn read_pipeline_cache(path: &std::path::Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    let (sum, data) = bytes.split_first_chunk::<8>()?;
    (u64::from_le_bytes(*sum) == super::fnv1a(data)).then(|| data.to_vec())
}

impl GpuContext {
    /// Writes the driver's pipeline cache to disk if pipelines were compiled since the last save,
    /// so the next process starts with them (best effort: a read-only cache dir only costs
    /// compile time next start). Called by [`Self::sync`], after downloads and on drop.
    pub fn save_pipeline_cache(&self) {
        let Some(c) = &self.pipeline_cache else {
            return;
        };
        if !c.dirty.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        if let Some(data) = c.cache.get_data() {
            let mut bytes = super::fnv1a(&data).to_le_bytes().to_vec();
            bytes.extend_from_slice(&data);
            let _ = crate::io::write_atomic(&c.path, &bytes);
        }
    }
}

impl Drop for GpuContext {
    fn drop(&mut self) {
        self.save_pipeline_cache();
    }
}

/// Device buffers: live ones (held by tensors) and idle ones kept for reuse. Sizes are rounded to
/// classes of ≤ 12.5 % waste so that similar shapes share buffers. On a miss, idle buffers are
/// freed least-recently-used first so that live + idle never exceeds the most bytes ever live at
/// once (or live + the new buffer): the pool never holds more than the work needed at its peak.
#[derive(Default)]
struct Pool {
    idle: Vec<(u64, wgpu::Buffer)>,
    tick: u64,
    live: u64,
    idle_bytes: u64,
    live_hwm: u64,
    stats: MemStats,
}

/// Device memory counters since the last [`GpuContext::reset_mem_stats`].
#[derive(Default, Clone, Copy, Debug)]
pub struct MemStats {
    /// Bytes held by tensors now (read from the pool by [`GpuContext::mem_stats`]).
    pub live: u64,
    /// Most bytes held at once (live + idle pool).
    pub peak: u64,
    /// The two largest buffers handed out.
    pub largest: [u64; 2],
}

/// The pool's size class of a request: at most 12.5 % above it, 16-byte aligned.
pub fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(16);
    let step = (1u64 << (63 - b.leading_zeros())).div_ceil(8).max(16);
    b.div_ceil(step) * step
}

struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    dispatches: usize,
}

/// A device buffer owned by a tensor; returns to the pool when dropped.
pub struct GpuBuf {
    ctx: Arc<GpuContext>,
    buf: Option<wgpu::Buffer>,
}

impl GpuBuf {
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buf.as_ref().expect("buffer present until drop")
    }
    pub fn ctx(&self) -> &Arc<GpuContext> {
        &self.ctx
    }
}

impl Drop for GpuBuf {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            let mut guard = self.ctx.pool.lock().unwrap();
            let p = &mut *guard;
            p.tick += 1;
            p.live -= b.size();
            p.idle_bytes += b.size();
            let t = p.tick;
            p.idle.push((t, b));
        }
    }
}

/// "name (Backend)": what `--adapter` matches against, so "vulkan" or "gl" select a backend.
pub fn adapter_label(i: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?})", i.name, i.backend)
}

/// All adapters wgpu can see on this machine (every backend).
pub fn enumerate_adapters() -> Vec<wgpu::Adapter> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
}

impl GpuContext {
    /// Opens an adapter. `name` filters by case-insensitive substring of the adapter name.
    /// With `hardware_only`, software adapters (lavapipe, llvmpipe, WARP) are skipped.
    pub fn new(name: Option<&str>, hardware_only: bool) -> Result<GpuContext> {
        let adapters = enumerate_adapters();
        if adapters.is_empty() {
            bail!(
                "no GPU adapter found (wgpu saw none on Vulkan/Metal/DX12/GL); install a driver \
                 (e.g. `apt-get install mesa-vulkan-drivers libvulkan1`) or use --backend cpu"
            );
        }
        let listing: Vec<String> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
            })
            .collect();
        let rank = |a: &wgpu::Adapter| {
            let i = a.get_info();
            let ty = match i.device_type {
                wgpu::DeviceType::DiscreteGpu => 0,
                wgpu::DeviceType::IntegratedGpu => 1,
                wgpu::DeviceType::VirtualGpu => 2,
                wgpu::DeviceType::Other => 3,
                wgpu::DeviceType::Cpu => 4,
            };
            // Vulkan first: GL's first dispatch of a barrier kernel can take a minute on llvmpipe.
            let be = match i.backend {
                wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
                _ => 1,
            };
            (ty, be)
        };
        let mut candidates: Vec<wgpu::Adapter> = adapters
            .into_iter()
            .filter(|a| {
                let i = a.get_info();
                name.is_none_or(|n| adapter_label(&i).to_lowercase().contains(&n.to_lowercase()))
                    && (!hardware_only || i.device_type != wgpu::DeviceType::Cpu)
            })
            .collect();
        candidates.sort_by_key(rank);
        let Some(adapter) = candidates.into_iter().next() else {
            bail!(
                "no {}adapter matches{}; adapters found: {}; use --backend cpu to run without a GPU",
                if hardware_only { "hardware " } else { "" },
                name.map(|n| format!(" '{n}'")).unwrap_or_default(),
                listing.join("; ")
            );
        };
        Self::from_adapter(adapter)
    }

    /// Opens a device on `adapter` with the limits our kernels need.
    pub fn from_adapter(adapter: wgpu::Adapter) -> Result<GpuContext> {
        let info = adapter.get_info();
        let f16_in_f32 = adapter
            .get_downlevel_capabilities()
            .flags
            .contains(wgpu::DownlevelFlags::SHADER_F16_IN_F32);
        let alimits = adapter.limits();
        let mut limits = wgpu::Limits::downlevel_defaults();
        limits.max_storage_buffer_binding_size = alimits.max_storage_buffer_binding_size;
        limits.max_buffer_size = alimits.max_buffer_size;
        limits.max_storage_buffers_per_shader_stage =
            alimits.max_storage_buffers_per_shader_stage.min(8);
        limits.max_compute_workgroup_storage_size = alimits.max_compute_workgroup_storage_size;
        limits.max_compute_invocations_per_workgroup =
            alimits.max_compute_invocations_per_workgroup;
        limits.max_compute_workgroup_size_x = alimits.max_compute_workgroup_size_x;
        limits.max_compute_workgroup_size_y = alimits.max_compute_workgroup_size_y;
        limits.max_compute_workgroup_size_z = alimits.max_compute_workgroup_size_z;
        // Compiled pipelines are kept on disk where the backend can (Vulkan): shader compilation
        // is most of a cold start on a software adapter.
        let cache_file = wgpu::util::pipeline_cache_key(&info)
            .filter(|_| adapter.features().contains(wgpu::Features::PIPELINE_CACHE))
            .map(|k| super::cache_dir().join(format!("{k}.bin")));
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("spadework"),
            required_features: if cache_file.is_some() {
                wgpu::Features::PIPELINE_CACHE
            } else {
                wgpu::Features::empty()
            },
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .with_context(|| {
            format!(
                "adapter '{}' ({:?}) failed to start; try --backend cpu",
                info.name, info.backend
            )
        })?;
        let pipeline_cache = cache_file.map(|path| {
            let data = read_pipeline_cache(&path);
            // SAFETY: `data` is what `save_pipeline_cache` wrote from `PipelineCache::get_data`
            // for an adapter with the same `pipeline_cache_key` (the file name), checked against
            // its checksum; wgpu validates its header and, with `fallback`, starts an empty cache
            // if it does not fit this device or driver.
            let cache = unsafe {
                device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                    label: Some("spadework"),
                    data: data.as_deref(),
                    fallback: true,
                })
            };
            PipelineDiskCache {
                cache,
                path,
                dirty: std::sync::atomic::AtomicBool::new(false),
            }
        });
        let error = Arc::new(Mutex::new(None::<String>));
        let sink = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut g = sink.lock().unwrap();
            if g.is_none() {
                *g = Some(e.to_string());
            }
        }));
        Ok(GpuContext {
            device,
            queue,
            info,
            limits,
            modules: Default::default(),
            checked_params: Default::default(),
            pipelines: Default::default(),
            layouts: Default::default(),
            pool: Default::default(),
            recorder: Mutex::new(Recorder {
                encoder: None,
                dispatches: 0,
            }),
            error,
            conv_tile: std::sync::OnceLock::new(),
            f16_in_f32,
            pipeline_cache,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}, driver {} {})",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.info.driver,
            self.info.driver_info
        )
    }

    /// Whether this adapter can run kernels reading weights stored as `s`.
    pub fn check_storage(&self, s: WeightStorage) -> Result<()> {
        if s == WeightStorage::F16 && !self.f16_in_f32 {
            bail!(
                "{} cannot unpack f16 in shaders (no SHADER_F16_IN_F32 downlevel capability); \
                 use f32 weights (--gpu-weights f32)",
                self.info.name
            );
        }
        Ok(())
    }

    /// Peak bytes of device buffers held at once since the context started (or the last
    /// [`Self::reset_mem_stats`]).
    pub fn peak_bytes(&self) -> u64 {
        self.pool.lock().unwrap().stats.peak
    }

    pub fn mem_stats(&self) -> MemStats {
        let p = self.pool.lock().unwrap();
        MemStats {
            live: p.live,
            ..p.stats
        }
    }

    /// Starts the counters afresh from what is held now.
    pub fn reset_mem_stats(&self) {
        let mut p = self.pool.lock().unwrap();
        p.stats = MemStats {
            live: 0,
            peak: p.live + p.idle_bytes,
            largest: [0, 0],
        };
    }

    fn check_error(&self) -> Result<()> {
        if let Some(e) = self.error.lock().unwrap().take() {
            bail!("GPU error: {e} (the CPU backend, --backend cpu, avoids the device)");
        }
        Ok(())
    }

    /// A storage buffer of at least `bytes` (its size class), from the pool when possible.
    pub fn alloc(self: &Arc<Self>, bytes: u64) -> Result<GpuBuf> {
        let size = size_class(bytes);
        if size > self.limits.max_storage_buffer_binding_size {
            bail!(
                "tensor of {} MiB exceeds this adapter's max storage binding of {} MiB; \
                 use a smaller size or --backend cpu",
                size >> 20,
                self.limits.max_storage_buffer_binding_size >> 20
            );
        }
        let mut guard = self.pool.lock().unwrap();
        let p = &mut *guard;
        // The most recently freed buffer of this class (warm in caches), else a new one.
        let hit = p
            .idle
            .iter()
            .enumerate()
            .filter(|(_, (_, b))| b.size() == size)
            .max_by_key(|(_, (t, _))| *t)
            .map(|(i, _)| i);
        let buf = match hit {
            Some(i) => {
                let (_, b) = p.idle.swap_remove(i);
                p.idle_bytes -= size;
                b
            }
            None => {
                // Make room: free idle buffers, oldest first, until the pool holds no more than
                // the most bytes ever live at once.
                let budget = p.live_hwm.max(p.live + size);
                while p.live + p.idle_bytes + size > budget && !p.idle.is_empty() {
                    let oldest = (0..p.idle.len()).min_by_key(|&i| p.idle[i].0).unwrap();
                    let (_, b) = p.idle.swap_remove(oldest);
                    p.idle_bytes -= b.size();
                }
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: None,
                    size,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            }
        };
        p.live += size;
        p.live_hwm = p.live_hwm.max(p.live);
        let held = p.live + p.idle_bytes;
        let st = &mut p.stats;
        st.peak = st.peak.max(held);
        if size > st.largest[0] {
            st.largest = [size, st.largest[0]];
        } else if size > st.largest[1] {
            st.largest[1] = size;
        }
        drop(guard);
        Ok(GpuBuf {
            ctx: self.clone(),
            buf: Some(buf),
        })
    }

    /// Frees every pooled (unused) buffer, and forgets the live high-water mark that sized the
    /// pool (for a new workload).
    pub fn trim_pool(&self) {
        let mut p = self.pool.lock().unwrap();
        p.idle.clear();
        p.idle_bytes = 0;
        p.live_hwm = p.live;
    }

    fn with_encoder<R>(&self, f: impl FnOnce(&mut wgpu::CommandEncoder) -> R) -> R {
        let mut rec = self.recorder.lock().unwrap();
        let enc = rec.encoder.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
        });
        f(enc)
    }

    /// Submits what has been recorded so far (without waiting).
    pub fn submit(&self) {
        let enc = {
            let mut rec = self.recorder.lock().unwrap();
            rec.dispatches = 0;
            rec.encoder.take()
        };
        if let Some(enc) = enc {
            self.queue.submit([enc.finish()]);
        }
    }

    /// Submits and waits for the device to finish.
    pub fn sync(&self) -> Result<()> {
        self.submit();
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| anyhow!("GPU device lost or hung: {e}; try --backend cpu"))?;
        self.check_error()?;
        self.save_pipeline_cache();
        Ok(())
    }

    /// Uploads f32 data into a new pooled buffer (ordered with the recorded work).
    pub fn upload(self: &Arc<Self>, data: &[f32]) -> Result<GpuBuf> {
        self.upload_bytes(bytemuck::cast_slice(data))
    }

    pub fn upload_bytes(self: &Arc<Self>, bytes: &[u8]) -> Result<GpuBuf> {
        let dst = self.alloc(bytes.len() as u64)?;
        if !bytes.is_empty() {
            let padded;
            let src_bytes = if !bytes.len().is_multiple_of(4) {
                padded = [bytes, &[0u8; 4][..4 - bytes.len() % 4]].concat();
                &padded[..]
            } else {
                bytes
            };
            let staging = self
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: None,
                    contents: src_bytes,
                    usage: wgpu::BufferUsages::COPY_SRC,
                });
            self.with_encoder(|enc| {
                enc.copy_buffer_to_buffer(&staging, 0, dst.buffer(), 0, src_bytes.len() as u64)
            });
        }
        Ok(dst)
    }

    /// Reads `len` f32 values back (submits and waits).
    pub fn download(&self, src: &GpuBuf, len: usize) -> Result<Vec<f32>> {
        let bytes = (len * 4) as u64;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.with_encoder(|enc| enc.copy_buffer_to_buffer(src.buffer(), 0, &staging, 0, bytes));
        self.submit();
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| anyhow!("GPU device lost or hung: {e}; try --backend cpu"))?;
        self.check_error()?;
        rx.recv()
            .map_err(|_| anyhow!("GPU readback was dropped"))?
            .map_err(|e| anyhow!("GPU readback failed: {e}"))?;
        let out = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| anyhow!("GPU readback failed: {e:?}"))?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        staging.unmap();
        // A result reached the host: the pipelines that made it are worth keeping.
        self.save_pipeline_cache();
        Ok(out)
    }

    fn layout(&self, n_inputs: usize) -> (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
        let mut layouts = self.layouts.lock().unwrap();
        layouts
            .entry(n_inputs)
            .or_insert_with(|| {
                let mut entries = Vec::new();
                for i in 0..=n_inputs {
                    entries.push(wgpu::BindGroupLayoutEntry {
                        binding: i as u32,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Storage {
                                read_only: i < n_inputs,
                            },
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                        count: None,
                    });
                }
                entries.push(wgpu::BindGroupLayoutEntry {
                    binding: n_inputs as u32 + 1,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                });
                let bgl = self
                    .device
                    .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                        label: None,
                        entries: &entries,
                    });
                let pl = self
                    .device
                    .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                        label: None,
                        bind_group_layouts: &[Some(&bgl)],
                        immediate_size: 0,
                    });
                (bgl, pl)
            })
            .clone()
    }

    /// The compiled pipeline for `entry` in kernel file `file` (compiled once, then cached).
    fn pipeline(
        &self,
        file: &'static str,
        entry: &'static str,
        n_inputs: usize,
        constants: &[(&'static str, f64)],
        check_params: (&'static str, fn(&str, &str) -> Result<()>),
    ) -> Result<Arc<(wgpu::ComputePipeline, usize)>> {
        let key: PipelineKey = (
            file,
            entry,
            constants.iter().map(|&(n, v)| (n, v.to_bits())).collect(),
        );
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        let src = KERNELS
            .iter()
            .find(|(n, _)| *n == file)
            .map(|(_, s)| *s)
            .ok_or_else(|| anyhow!("unknown kernel file {file}"))?;
        // Once per kernel file and params type, not per pipeline (entry points and override
        // constants share the file's uniform struct).
        let (params_type, check) = check_params;
        if !self
            .checked_params
            .lock()
            .unwrap()
            .contains(&(file, params_type))
        {
            check(file, src)?;
            self.checked_params
                .lock()
                .unwrap()
                .insert((file, params_type));
        }
        let module = {
            let mut modules = self.modules.lock().unwrap();
            modules
                .entry(file)
                .or_insert_with(|| {
                    self.device
                        .create_shader_module(wgpu::ShaderModuleDescriptor {
                            label: Some(file),
                            source: wgpu::ShaderSource::Wgsl(src.into()),
                        })
                })
                .clone()
        };
        let (_, layout) = self.layout(n_inputs);
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&layout),
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    ..Default::default()
                },
                cache: self.pipeline_cache.as_ref().map(|c| &c.cache),
            });
        self.check_error()
            .with_context(|| format!("compiling {file}:{entry} {constants:?}"))?;
        if let Some(c) = &self.pipeline_cache {
            c.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let p = Arc::new((pipeline, n_inputs));
        self.pipelines.lock().unwrap().insert(key, p.clone());
        Ok(p)
    }

    /// Records one dispatch of `file:entry` reading `inputs` (bindings 0..n), writing `output`
    /// (binding n) with the uniform `params` (binding n+1, 32-bit words).
    pub fn dispatch<P: KernelParams>(
        &self,
        file: &'static str,
        entry: &'static str,
        inputs: &[&wgpu::Buffer],
        output: &wgpu::Buffer,
        params: &P,
        groups: [u32; 3],
    ) -> Result<()> {
        self.dispatch_specialized(file, entry, &[], inputs, output, params, groups)
    }

    /// [`Self::dispatch`] of a pipeline specialized by WGSL `override` constants (each set of
    /// values is its own pipeline, compiled once: loop bounds that are constants let the driver
    /// unroll and keep per-invocation arrays in registers).
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch_specialized<P: KernelParams>(
        &self,
        file: &'static str,
        entry: &'static str,
        constants: &[(&'static str, f64)],
        inputs: &[&wgpu::Buffer],
        output: &wgpu::Buffer,
        params: &P,
        groups: [u32; 3],
    ) -> Result<()> {
        let max = self.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            bail!(
                "{file}:{entry}: dispatch {groups:?} exceeds the adapter limit {max} per dimension"
            );
        }
        if groups.contains(&0) {
            return Ok(());
        }
        let p = self.pipeline(
            file,
            entry,
            inputs.len(),
            constants,
            (std::any::type_name::<P>(), super::kernel_params::check::<P>),
        )?;
        let (bgl, _) = self.layout(inputs.len());
        let ubuf = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::bytes_of(params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let mut entries: Vec<wgpu::BindGroupEntry> = inputs
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        entries.push(wgpu::BindGroupEntry {
            binding: inputs.len() as u32,
            resource: output.as_entire_binding(),
        });
        entries.push(wgpu::BindGroupEntry {
            binding: inputs.len() as u32 + 1,
            resource: ubuf.as_entire_binding(),
        });
        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &bgl,
            entries: &entries,
        });
        let submit_now = {
            let mut rec = self.recorder.lock().unwrap();
            let enc = rec.encoder.get_or_insert_with(|| {
                self.device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
            });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(entry),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&p.0);
                pass.set_bind_group(0, &bg, &[]);
                pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
            }
            rec.dispatches += 1;
            rec.dispatches >= DISPATCHES_PER_SUBMIT
        };
        if submit_now {
            self.submit();
        }
        Ok(())
    }
}

/// Splits `n` workgroups over x (≤ 65535) and y, for 1-D kernels that rebuild the flat index from
/// `num_workgroups`.
pub fn groups_1d(total_threads: usize, wg: usize) -> [u32; 3] {
    let g = total_threads.div_ceil(wg).max(1);
    if g <= 65535 {
        [g as u32, 1, 1]
    } else {
        [65535, g.div_ceil(65535) as u32, 1]
    }
}
