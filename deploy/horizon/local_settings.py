# horizon's settings (/etc/horizon/local_settings.py, which the image links
# openstack_dashboard/local/local_settings.py to): keystone, memcached for sessions.
# The static files are in the image, collected and compressed (COMPRESS_OFFLINE).
DEBUG = False
ALLOWED_HOSTS = ["*"]
SECRET_KEY = "@password@"
OPENSTACK_HOST = "keystone-api"
OPENSTACK_KEYSTONE_URL = "@keystone_url@/v3"
OPENSTACK_KEYSTONE_DEFAULT_DOMAIN = "Default"
SESSION_ENGINE = "django.contrib.sessions.backends.cache"
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": "@memcached_servers@",
    },
}
TIME_ZONE = "UTC"
