"""napari dock widgets: thin layers that read layers, call the core, write layers.

Nothing here is imported by ``import napari_sem_analysis``; napari imports the
widget modules on demand through the npe2 manifest.
"""
