//! Finding a wgpu adapter before the window opens, without touching the GL/EGL backend (probing it
//! next to a glow context has crashed on Mesa).

use egui_wgpu::wgpu;

/// The adapter wgpu would use on the primary backends (Vulkan, Metal, DX12), if any.
pub fn wgpu_adapter() -> Option<wgpu::AdapterInfo> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::PRIMARY,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .ok()?;
    Some(adapter.get_info())
}
