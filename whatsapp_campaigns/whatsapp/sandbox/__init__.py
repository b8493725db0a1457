"""The WhatsApp sandbox (SPEC §7): a stand-in for the Cloud API, in-process or over HTTP."""
