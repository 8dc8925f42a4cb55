# Sourced by the wgpu device scripts: unpacks the Vulkan loader and glvnd carried in .gl (the
# GPU machine has the NVIDIA driver but not the loader; see wgpu-test.sh) and points the
# loader at NVIDIA's ICD where it is not in the standard place.
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
if [ ! -e /usr/share/vulkan/icd.d/nvidia_icd.json ] && [ -e /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
