"""Where the network looks: class-activation maps (:mod:`.maps`), chosen faces for them
(:mod:`.candidates`) and the pictures a user sees (:mod:`.pictures`)."""
