set datafile separator whitespace
set key inside right top box opaque
set grid
set border 3
set tics nomirror
set pointsize 1.2
set style line 1 lc rgb '#000000' lw 2 pt 5
set style line 2 lc rgb '#1f77b4' lw 2 pt 7
set style line 3 lc rgb '#d62728' lw 2 pt 9
set style line 4 lc rgb '#2ca02c' lw 2 pt 11
set style line 5 lc rgb '#9467bd' lw 2 pt 13
set style line 6 lc rgb '#ff7f0e' lw 2 pt 3
set style line 9 lc rgb '#000000' lw 2 pt 6 ps 3
set multiplot layout 1,3 title 'RX: records offloaded vs loss (uploads)'
set xlabel 'RX loss (% of packets)'
set yrange [0:105]
set xrange [-0.25:*]
set key inside bottom left box opaque
set title 'records fully offloaded'
set ylabel '% of records received'
plot 'fig4-rx-loss.dat' index 0 using ($1+-0.04):2:3:4 with yerrorlines ls 1 title "paper's NIC (rx-reorder-buf 0)", 'fig4-rx-loss.dat' index 1 using ($1+0):2:3:4 with yerrorlines ls 2 title "ours (256 KiB reorder buffer)", 'fig4-rx-loss.dat' index 2 using ($1+0.04):2:3:4 with yerrorlines ls 3 title "ours, hint resync"
unset key
set title 'records partially offloaded'
set ylabel '% of records received'
plot 'fig4-rx-loss.dat' index 3 using ($1+-0.04):2:3:4 with yerrorlines ls 1 title "paper's NIC (rx-reorder-buf 0)", 'fig4-rx-loss.dat' index 4 using ($1+0):2:3:4 with yerrorlines ls 2 title "ours (256 KiB reorder buffer)", 'fig4-rx-loss.dat' index 5 using ($1+0.04):2:3:4 with yerrorlines ls 3 title "ours, hint resync"
set title 'records not offloaded'
set ylabel '% of records received'
plot 'fig4-rx-loss.dat' index 6 using ($1+-0.04):2:3:4 with yerrorlines ls 1 title "paper's NIC (rx-reorder-buf 0)", 'fig4-rx-loss.dat' index 7 using ($1+0):2:3:4 with yerrorlines ls 2 title "ours (256 KiB reorder buffer)", 'fig4-rx-loss.dat' index 8 using ($1+0.04):2:3:4 with yerrorlines ls 3 title "ours, hint resync"
unset multiplot
