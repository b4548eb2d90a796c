"""大鱼号 real-name verification support bot."""
