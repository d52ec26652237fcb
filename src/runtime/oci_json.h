/* The bundle's config.json (runtime-spec JSON of the container's OCI spec). */
#pragma once
#include "oci.pb-c.h"

/* malloc'd, NULL when out of memory. */
char *oci_config_json(const Grpc__Spec *spec);
