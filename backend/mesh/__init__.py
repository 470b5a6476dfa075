"""Meshes: marching cubes, colours, decimation, UV textures and file export."""
