/* ImageFolder datasets: root/<class>/<file>.<ext> with torchvision's image
 * extensions (USI_IMAGE_EXTENSIONS below, any case), the
 * classes sorted by name (torchvision's order, so label i is the i-th class
 * folder). Images in subfolders of a class folder, at any depth, belong to
 * that class, as in torchvision: a class's folders come sorted by path and
 * the files of each sorted by name. Inside class folders hidden files and
 * folders (".x") count as torchvision counts them (".a.jpg" is an image);
 * hidden folders under the root (.git, .ipynb_checkpoints) are not classes,
 * and each is named in a warning. A class folder without images keeps its
 * label, so the others never shift; it is reported and counted. Files with
 * other extensions are left out, as torchvision leaves them out, summed up
 * in one warning per dataset. Files are not opened
 * here: a bad file is found, reported and skipped by the loader. */
#ifndef USI_DATA_IMAGEFOLDER_H
#define USI_DATA_IMAGEFOLDER_H

#include <stddef.h>
#include <stdint.h>
#include <usi/plugin.h>

typedef struct usi_dataset usi_dataset;

/* Errors: root missing, not a folder, unreadable, holding no class folder
 * at all, or a class folder whose name is not UTF-8 (class names are
 * stored as JSON text in weights files). A leading "~/" (or a lone "~") is
 * $HOME, as in plugin_path; a relative root is named with the folder it was
 * resolved from. */
usi_error *usi_dataset_open(const char *root, usi_dataset **out);
/* For a training set: refuses a dataset of one class folder, which would
 * train to a loss of 0 and learn nothing. Evaluation and prediction may
 * use one class's folder and don't call this. */
usi_error *usi_dataset_check_training(const usi_dataset *ds);
void usi_dataset_free(usi_dataset *ds);

const char *usi_dataset_root(const usi_dataset *ds);
size_t usi_dataset_size(const usi_dataset *ds);
size_t usi_dataset_class_count(const usi_dataset *ds);
const char *usi_dataset_class_name(const usi_dataset *ds, size_t label);
/* Full path and label of sample i (0 <= i < size). */
const char *usi_dataset_path(const usi_dataset *ds, size_t i);
int32_t usi_dataset_label(const usi_dataset *ds, size_t i);
/* Class folders that held no image, and folders that could not be read. */
size_t usi_dataset_empty_classes(const usi_dataset *ds);

/* The number of class folders under root (as usi_dataset_open finds
 * them), without listing any images. */
usi_error *usi_dataset_count_classes(const char *root, size_t *n);

/* The extensions read, torchvision's IMG_EXTENSIONS, for messages. */
#define USI_IMAGE_EXTENSIONS ".jpg, .jpeg, .png, .bmp, .ppm, .pgm, .tif, .tiff or .webp"

/* 1 when the name ends in one of USI_IMAGE_EXTENSIONS, in any case (".jpg"
 * too, as in torchvision). The format itself is found from the bytes. */
int usi_is_image_name(const char *name);

#endif
