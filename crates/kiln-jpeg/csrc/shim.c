/*
 * Kiln's driver for libjpeg's decompressor.
 *
 * libjpeg reports fatal errors by calling `error_exit`, which must not return. This shim installs
 * an error manager that `longjmp`s back into `kiln_jpeg_decode`, so the Rust side receives a status
 * code and libjpeg's message instead of an abort. Warnings are counted and kept silent; the one
 * that says the data ended early (JWRN_JPEG_EOF), even if only the end-of-image marker is missing,
 * marks the file as truncated: Pillow refuses such files as well ("image file is truncated").
 */
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "jpeglib.h"
#include "jerror.h"

/* Status codes, mirrored in src/ffi.rs. */
#define KILN_JPEG_OK 0
#define KILN_JPEG_ERROR 1
#define KILN_JPEG_TRUNCATED 2
#define KILN_JPEG_BAD_BUFFER 3
#define KILN_JPEG_UNSUPPORTED 4

struct kiln_jpeg_info {
  unsigned int width;
  unsigned int height;
  int components;
  int color_space;
  int progressive;
  int arithmetic;
  int warnings;
  char message[JMSG_LENGTH_MAX];
};

struct kiln_error {
  struct jpeg_error_mgr pub;
  jmp_buf jump;
  int truncated;
};

static void kiln_error_exit(j_common_ptr cinfo) {
  struct kiln_error *err = (struct kiln_error *)cinfo->err;
  longjmp(err->jump, 1);
}

static void kiln_emit_message(j_common_ptr cinfo, int level) {
  struct kiln_error *err = (struct kiln_error *)cinfo->err;
  if (level < 0) {
    err->pub.num_warnings++;
    if (err->pub.msg_code == JWRN_JPEG_EOF) {
      err->truncated = 1;
    }
  }
}

static void kiln_output_message(j_common_ptr cinfo) { (void)cinfo; }

/*
 * Decodes `data` (`len` bytes). With `out == NULL` only the header is read and `info` filled.
 * Otherwise the image is decoded into `out`, which must hold exactly
 * width * height * components bytes: 1 component gives grayscale, 3 give RGB (converted from
 * YCbCr with libjpeg's tables when the file is YCbCr), 4 give CMYK as stored (YCCK converted).
 * `max_pixels` (0: no limit) refuses larger images before any sample memory is allocated.
 */
int kiln_jpeg_decode(const unsigned char *data, unsigned long len, unsigned char *out,
                     size_t out_len, unsigned long long max_pixels,
                     struct kiln_jpeg_info *info) {
  struct jpeg_decompress_struct cinfo;
  struct kiln_error err;
  volatile int created = 0;

  memset(info, 0, sizeof(*info));
  memset(&cinfo, 0, sizeof(cinfo));
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = kiln_error_exit;
  err.pub.emit_message = kiln_emit_message;
  err.pub.output_message = kiln_output_message;
  err.truncated = 0;

  if (setjmp(err.jump)) {
    (*cinfo.err->format_message)((j_common_ptr)&cinfo, info->message);
    info->warnings = (int)err.pub.num_warnings;
    if (created) {
      jpeg_destroy_decompress(&cinfo);
    }
    return err.truncated ? KILN_JPEG_TRUNCATED : KILN_JPEG_ERROR;
  }

  jpeg_create_decompress(&cinfo);
  created = 1;
  jpeg_mem_src(&cinfo, data, len);
  jpeg_read_header(&cinfo, TRUE);

  info->width = cinfo.image_width;
  info->height = cinfo.image_height;
  info->components = cinfo.num_components;
  info->color_space = (int)cinfo.jpeg_color_space;
  info->progressive = cinfo.progressive_mode ? 1 : 0;
  info->arithmetic = cinfo.arith_code ? 1 : 0;

  if (out == NULL) {
    info->warnings = (int)err.pub.num_warnings;
    jpeg_destroy_decompress(&cinfo);
    return err.truncated ? KILN_JPEG_TRUNCATED : KILN_JPEG_OK;
  }
  if (max_pixels != 0 &&
      (unsigned long long)cinfo.image_width * cinfo.image_height > max_pixels) {
    snprintf(info->message, sizeof(info->message), "%ux%u pixels exceed the limit of %llu",
             cinfo.image_width, cinfo.image_height, max_pixels);
    jpeg_destroy_decompress(&cinfo);
    return KILN_JPEG_UNSUPPORTED;
  }
  switch (cinfo.num_components) {
    case 1:
      cinfo.out_color_space = JCS_GRAYSCALE;
      break;
    case 3:
      cinfo.out_color_space = JCS_RGB;
      break;
    case 4:
      cinfo.out_color_space = JCS_CMYK;
      break;
    default:
      snprintf(info->message, sizeof(info->message), "%d color components are not supported",
               cinfo.num_components);
      jpeg_destroy_decompress(&cinfo);
      return KILN_JPEG_UNSUPPORTED;
  }

  jpeg_start_decompress(&cinfo);
  {
    size_t stride = (size_t)cinfo.output_width * (size_t)cinfo.output_components;
    if (stride * (size_t)cinfo.output_height != out_len) {
      snprintf(info->message, sizeof(info->message),
               "output buffer of %zu bytes for %ux%u x %d samples", out_len, cinfo.output_width,
               cinfo.output_height, cinfo.output_components);
      jpeg_destroy_decompress(&cinfo);
      return KILN_JPEG_BAD_BUFFER;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
      JSAMPROW row = out + (size_t)cinfo.output_scanline * stride;
      jpeg_read_scanlines(&cinfo, &row, 1);
    }
  }
  jpeg_finish_decompress(&cinfo);
  info->warnings = (int)err.pub.num_warnings;
  jpeg_destroy_decompress(&cinfo);
  return err.truncated ? KILN_JPEG_TRUNCATED : KILN_JPEG_OK;
}
