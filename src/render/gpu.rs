//! The wgpu path: `shaders/viewer.wgsl` drawn through an egui-wgpu paint callback. The pipeline is
//! built once (`install`); textures are uploaded once per image and cached by image id; each frame
//! only writes a small uniform buffer, so W/L drags and opacity changes never re-upload pixels.

use std::collections::HashMap;

use egui_wgpu::wgpu;
use egui_wgpu::{CallbackResources, CallbackTrait, ScreenDescriptor};

use super::{ImageHandle, RenderSettings};
use crate::imaging::VoiLut;
use crate::imaging::colormap::Colormap;
use crate::imaging::voi::VoiMode;

mod uniforms;

pub use uniforms::Uniforms;

pub const SHADER_SOURCE: &str = include_str!("../../shaders/viewer.wgsl");
/// Entries per row of the VOI LUT texture (must match `LUT_ROW` in the shader).
const LUT_ROW: u32 = 256;

/// Pipeline and layout, built once per render target format.
pub struct ViewerPipeline {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    srgb_target: bool,
}

impl ViewerPipeline {
    pub fn new(device: &wgpu::Device, target_format: wgpu::TextureFormat) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("cxrlens viewer shader"),
            source: wgpu::ShaderSource::Wgsl(SHADER_SOURCE.into()),
        });
        let texture_entry = |binding: u32| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::FRAGMENT,
            ty: wgpu::BindingType::Texture {
                sample_type: wgpu::TextureSampleType::Float { filterable: false },
                view_dimension: wgpu::TextureViewDimension::D2,
                multisampled: false,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("cxrlens viewer bind group layout"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
                texture_entry(1),
                texture_entry(2),
                texture_entry(3),
                texture_entry(4),
                texture_entry(5),
                texture_entry(6),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("cxrlens viewer pipeline layout"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("cxrlens viewer pipeline"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("vs_main"),
                compilation_options: Default::default(),
                buffers: &[],
            },
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("fs_main"),
                compilation_options: Default::default(),
                targets: &[Some(wgpu::ColorTargetState {
                    format: target_format,
                    blend: None,
                    write_mask: wgpu::ColorWrites::ALL,
                })],
            }),
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            multiview_mask: None,
            cache: None,
        });
        Self {
            pipeline,
            layout,
            srgb_target: target_format.is_srgb(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum TextureKey {
    Image(u64),
    /// VOI LUT `index` of image `id`.
    Lut(u64, usize),
    /// Colormaps of overlay layers 0 and 1, one row each.
    Colormaps(Colormap, Colormap),
    /// The colour pixels of image `id`.
    Color(u64),
    Dummy,
    DummyColor,
}

struct PaneGpu {
    uniform: wgpu::Buffer,
    bind_group: Option<wgpu::BindGroup>,
    bound: [TextureKey; 6],
}

/// GPU state shared by every viewer pane, stored in egui-wgpu's callback resources.
pub struct ViewerResources {
    pipeline: ViewerPipeline,
    textures: HashMap<TextureKey, wgpu::TextureView>,
    panes: HashMap<u64, PaneGpu>,
    max_texture_dimension: u32,
    /// Panes prepared in the frame being built (`end_frame` forgets the others).
    prepared: std::collections::HashSet<u64>,
}

impl ViewerResources {
    pub fn new(device: &wgpu::Device, target_format: wgpu::TextureFormat) -> Self {
        let mut resources = Self {
            pipeline: ViewerPipeline::new(device, target_format),
            textures: HashMap::new(),
            panes: HashMap::new(),
            max_texture_dimension: device.limits().max_texture_dimension_2d,
            prepared: Default::default(),
        };
        let dummy = create_texture(
            device,
            [1, 1],
            wgpu::TextureFormat::R32Float,
            "cxrlens dummy",
        );
        resources
            .textures
            .insert(TextureKey::Dummy, dummy.create_view(&Default::default()));
        let dummy_color = create_texture(
            device,
            [1, 1],
            wgpu::TextureFormat::Rgba32Float,
            "cxrlens dummy colour",
        );
        resources.textures.insert(
            TextureKey::DummyColor,
            dummy_color.create_view(&Default::default()),
        );
        resources
    }

    fn ensure_texture<'a>(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        key: TextureKey,
        upload: impl FnOnce() -> Upload<'a>,
    ) {
        if self.textures.contains_key(&key) {
            return;
        }
        let up = upload();
        let texture = create_texture(device, up.size, up.format, "cxrlens image");
        queue.write_texture(
            wgpu::TexelCopyTextureInfo {
                texture: &texture,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            &up.bytes,
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(up.size[0] * up.bytes_per_texel),
                rows_per_image: Some(up.size[1]),
            },
            wgpu::Extent3d {
                width: up.size[0],
                height: up.size[1],
                depth_or_array_layers: 1,
            },
        );
        self.textures
            .insert(key, texture.create_view(&Default::default()));
    }

    /// Uploads what `callback` needs, writes its uniforms and (re)binds its textures.
    fn prepare_pane(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        callback: &ViewerCallback,
        ppp: f32,
    ) {
        self.prepared.insert(callback.pane_id);
        let image = &callback.image;
        if image.image.width > self.max_texture_dimension
            || image.image.height > self.max_texture_dimension
        {
            return; // the UI uses the CPU path for such images
        }
        let image_key = TextureKey::Image(image.id);
        self.ensure_texture(device, queue, image_key, || {
            Upload::scalar(&image.image.values, [image.image.width, image.image.height])
        });
        let color_key = match &image.color {
            Some(rgb) => {
                let key = TextureKey::Color(image.id);
                self.ensure_texture(device, queue, key, || Upload::rgb(rgb));
                key
            }
            None => TextureKey::DummyColor,
        };
        let lut_key = match callback.settings.display.voi {
            VoiMode::Lut(i) if i < callback.settings.luts.len() => {
                let key = TextureKey::Lut(image.id, i);
                let lut = &callback.settings.luts[i];
                self.ensure_texture(device, queue, key, || Upload::lut(lut));
                key
            }
            _ => TextureKey::Dummy,
        };
        let mut settings = callback.settings.clone();
        let mut overlay_keys = [TextureKey::Dummy; 2];
        for (slot, layer) in settings.overlays.iter_mut().enumerate() {
            match layer {
                Some(o)
                    if o.heat.image.width == image.image.width
                        && o.heat.image.height == image.image.height =>
                {
                    let key = TextureKey::Image(o.heat.id);
                    self.ensure_texture(device, queue, key, || {
                        Upload::scalar(
                            &o.heat.image.values,
                            [o.heat.image.width, o.heat.image.height],
                        )
                    });
                    overlay_keys[slot] = key;
                }
                _ => *layer = None,
            }
        }
        let colormap_of = |i: usize| {
            settings.overlays[i]
                .as_ref()
                .map_or(Colormap::Inferno, |o| o.colormap)
        };
        let colormap_key = TextureKey::Colormaps(colormap_of(0), colormap_of(1));
        self.ensure_texture(device, queue, colormap_key, || {
            Upload::colormaps(colormap_of(0), colormap_of(1))
        });
        let uniforms = Uniforms::new(
            &settings,
            [image.image.width, image.image.height],
            [
                callback.image_origin_points[0] * ppp,
                callback.image_origin_points[1] * ppp,
            ],
            callback.zoom * ppp,
            self.pipeline.srgb_target,
            callback.background,
            image.color.is_some(),
        );
        let bound = [
            image_key,
            lut_key,
            overlay_keys[0],
            overlay_keys[1],
            colormap_key,
            color_key,
        ];
        let pane = self
            .panes
            .entry(callback.pane_id)
            .or_insert_with(|| PaneGpu {
                uniform: device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("cxrlens viewer uniforms"),
                    size: std::mem::size_of::<Uniforms>() as u64,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
                bind_group: None,
                bound,
            });
        queue.write_buffer(&pane.uniform, 0, bytemuck::bytes_of(&uniforms));
        if pane.bind_group.is_none() || pane.bound != bound {
            // Binding 0: the uniforms; 1 … 6: the textures in `bound`'s order.
            let entries: Vec<wgpu::BindGroupEntry<'_>> =
                std::iter::once(pane.uniform.as_entire_binding())
                    .chain(
                        bound
                            .iter()
                            .map(|k| wgpu::BindingResource::TextureView(&self.textures[k])),
                    )
                    .enumerate()
                    .map(|(i, resource)| wgpu::BindGroupEntry {
                        binding: i as u32,
                        resource,
                    })
                    .collect();
            pane.bind_group = Some(device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("cxrlens viewer bind group"),
                layout: &self.pipeline.layout,
                entries: &entries,
            }));
            pane.bound = bound;
            // Drop textures no pane uses any more (a closed image's pixels leave the GPU).
            let used: Vec<TextureKey> = self.panes.values().flat_map(|p| p.bound).collect();
            self.textures.retain(|k, _| {
                matches!(
                    k,
                    TextureKey::Dummy | TextureKey::DummyColor | TextureKey::Colormaps(..)
                ) || used.contains(k)
            });
        }
    }

    /// Uploads what `callback` needs and binds it (what each pane's paint callback does in a frame).
    pub fn prepare(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        callback: &ViewerCallback,
        pixels_per_point: f32,
    ) {
        self.prepare_pane(device, queue, callback, pixels_per_point);
    }

    /// Ends a frame: panes not drawn in it (a closed compare pane, a replaced image) are forgotten
    /// and the textures no remaining pane uses leave the GPU. Idempotent within a frame.
    pub fn end_frame(&mut self) {
        if self.prepared.is_empty() {
            return;
        }
        let prepared = std::mem::take(&mut self.prepared);
        self.panes.retain(|id, _| prepared.contains(id));
        let used: Vec<TextureKey> = self.panes.values().flat_map(|p| p.bound).collect();
        self.textures.retain(|k, _| {
            matches!(
                k,
                TextureKey::Dummy | TextureKey::DummyColor | TextureKey::Colormaps(..)
            ) || used.contains(k)
        });
    }

    /// Textures held on the GPU (images, LUTs, colormaps, the two placeholders).
    pub fn texture_count(&self) -> usize {
        self.textures.len()
    }

    fn draw_pane(&self, pane_id: u64, render_pass: &mut wgpu::RenderPass<'_>) {
        let Some(bind_group) = self.panes.get(&pane_id).and_then(|p| p.bind_group.as_ref()) else {
            return;
        };
        render_pass.set_pipeline(&self.pipeline.pipeline);
        render_pass.set_bind_group(0, bind_group, &[]);
        render_pass.draw(0..3, 0..1);
    }
}

/// What to upload. Scalar images are handed to wgpu straight from the image's own buffer (no copy
/// of a 400 MB radiograph); LUTs, colour and colormaps are built for the upload.
struct Upload<'a> {
    size: [u32; 2],
    format: wgpu::TextureFormat,
    bytes_per_texel: u32,
    bytes: std::borrow::Cow<'a, [u8]>,
}

impl<'a> Upload<'a> {
    fn scalar(values: &'a [f32], size: [u32; 2]) -> Self {
        Self {
            size,
            format: wgpu::TextureFormat::R32Float,
            bytes_per_texel: 4,
            bytes: std::borrow::Cow::Borrowed(bytemuck::cast_slice(values)),
        }
    }

    /// Interleaved R, G, B as Rgba32Float (alpha 1; wgpu has no three-channel float format).
    fn rgb(rgb: &crate::imaging::RgbImage) -> Self {
        let values: Vec<f32> = rgb
            .values
            .chunks_exact(3)
            .flat_map(|c| [c[0], c[1], c[2], 1.0])
            .collect();
        Self {
            size: [rgb.width, rgb.height],
            format: wgpu::TextureFormat::Rgba32Float,
            bytes_per_texel: 16,
            bytes: std::borrow::Cow::Owned(bytemuck::cast_slice(&values).to_vec()),
        }
    }

    fn lut(lut: &VoiLut) -> Upload<'static> {
        let rows = (lut.outputs.len() as u32).div_ceil(LUT_ROW).max(1);
        let mut values = lut.outputs.clone();
        values.resize(
            (rows * LUT_ROW) as usize,
            *lut.outputs.last().unwrap_or(&0.0),
        );
        Upload {
            size: [LUT_ROW, rows],
            format: wgpu::TextureFormat::R32Float,
            bytes_per_texel: 4,
            bytes: std::borrow::Cow::Owned(bytemuck::cast_slice(&values).to_vec()),
        }
    }

    fn colormaps(first: Colormap, second: Colormap) -> Self {
        let bytes = first
            .table()
            .into_iter()
            .chain(second.table())
            .flatten()
            .collect();
        Self {
            size: [256, 2],
            format: wgpu::TextureFormat::Rgba8Unorm,
            bytes_per_texel: 4,
            bytes: std::borrow::Cow::Owned(bytes),
        }
    }
}

fn create_texture(
    device: &wgpu::Device,
    size: [u32; 2],
    format: wgpu::TextureFormat,
    label: &str,
) -> wgpu::Texture {
    device.create_texture(&wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d {
            width: size[0],
            height: size[1],
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    })
}

/// Installs the viewer's pipeline into eframe's wgpu renderer. Returns the largest texture side the
/// device accepts (larger images use the CPU path).
pub fn install(render_state: &egui_wgpu::RenderState) -> u32 {
    let resources = ViewerResources::new(&render_state.device, render_state.target_format);
    let max = resources.max_texture_dimension;
    render_state
        .renderer
        .write()
        .callback_resources
        .insert(resources);
    max
}

/// One pane's draw request for this frame.
pub struct ViewerCallback {
    pub pane_id: u64,
    pub image: ImageHandle,
    pub settings: RenderSettings,
    /// Screen position (points) of image point (0, 0).
    pub image_origin_points: [f32; 2],
    /// Screen points per image pixel.
    pub zoom: f32,
    pub background: [f32; 3],
}

impl CallbackTrait for ViewerCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        screen_descriptor: &ScreenDescriptor,
        _egui_encoder: &mut wgpu::CommandEncoder,
        callback_resources: &mut CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        if let Some(resources) = callback_resources.get_mut::<ViewerResources>() {
            resources.prepare_pane(device, queue, self, screen_descriptor.pixels_per_point);
        }
        Vec::new()
    }

    fn finish_prepare(
        &self,
        _device: &wgpu::Device,
        _queue: &wgpu::Queue,
        _egui_encoder: &mut wgpu::CommandEncoder,
        callback_resources: &mut CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        if let Some(resources) = callback_resources.get_mut::<ViewerResources>() {
            resources.end_frame();
        }
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        render_pass: &mut wgpu::RenderPass<'static>,
        callback_resources: &CallbackResources,
    ) {
        if let Some(resources) = callback_resources.get::<ViewerResources>() {
            resources.draw_pane(self.pane_id, render_pass);
        }
    }
}

/// Renders `callback` into an offscreen RGBA8 target of `size` pixels (ppp = 1) and reads it back.
/// Used by the shader-vs-CPU tests; the same resources and pipeline as on screen.
pub fn render_offscreen(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    callback: &ViewerCallback,
    size: [u32; 2],
) -> Result<Vec<u8>, String> {
    let format = wgpu::TextureFormat::Rgba8Unorm;
    let mut resources = ViewerResources::new(device, format);
    resources.prepare_pane(device, queue, callback, 1.0);
    let target = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("cxrlens offscreen target"),
        size: wgpu::Extent3d {
            width: size[0],
            height: size[1],
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let view = target.create_view(&Default::default());
    let padded_row = (size[0] * 4).div_ceil(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT)
        * wgpu::COPY_BYTES_PER_ROW_ALIGNMENT;
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("cxrlens readback"),
        size: (padded_row * size[1]) as u64,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some("cxrlens offscreen pass"),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: &view,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations {
                    load: wgpu::LoadOp::Clear(wgpu::Color::BLACK),
                    store: wgpu::StoreOp::Store,
                },
            })],
            depth_stencil_attachment: None,
            timestamp_writes: None,
            occlusion_query_set: None,
            multiview_mask: None,
        });
        resources.draw_pane(callback.pane_id, &mut pass);
    }
    encoder.copy_texture_to_buffer(
        wgpu::TexelCopyTextureInfo {
            texture: &target,
            mip_level: 0,
            origin: wgpu::Origin3d::ZERO,
            aspect: wgpu::TextureAspect::All,
        },
        wgpu::TexelCopyBufferInfo {
            buffer: &readback,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(padded_row),
                rows_per_image: Some(size[1]),
            },
        },
        wgpu::Extent3d {
            width: size[0],
            height: size[1],
            depth_or_array_layers: 1,
        },
    );
    queue.submit([encoder.finish()]);
    let slice = readback.slice(..);
    slice.map_async(wgpu::MapMode::Read, |_| {});
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| e.to_string())?;
    let data = slice.get_mapped_range().map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity((size[0] * size[1] * 4) as usize);
    for row in data.chunks(padded_row as usize).take(size[1] as usize) {
        out.extend_from_slice(&row[..(size[0] * 4) as usize]);
    }
    Ok(out)
}
